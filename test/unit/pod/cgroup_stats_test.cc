#include "pod/cgroup_stats.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::ElementsAre;
using ::testing::Key;

TEST(ParseNetDevTest, EveryInterfaceButLoopback) {
  const std::string text =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo:     840      10    0    0    0     0          0         0      840      10    0 "
      "   0    0     0       0          0\n"
      "  eth0:    9876      54    1    2    0     0          0         3     4321      32    4 "
      "   5    0     0       0          0\n"
      "net1:18446744073709551615 7 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n"
      "  bad0: 1 2 3\n";
  std::map<std::string, InterfaceSample> interfaces = ParseNetDev(text);
  EXPECT_THAT(interfaces, ElementsAre(Key("eth0"), Key("net1")));
  const InterfaceSample& eth0 = interfaces["eth0"];
  EXPECT_EQ(eth0.rx_bytes, 9876u);
  EXPECT_EQ(eth0.rx_packets, 54u);
  EXPECT_EQ(eth0.rx_errors, 1u);
  EXPECT_EQ(eth0.rx_dropped, 2u);
  EXPECT_EQ(eth0.tx_bytes, 4321u);
  EXPECT_EQ(eth0.tx_packets, 32u);
  EXPECT_EQ(eth0.tx_errors, 4u);
  EXPECT_EQ(eth0.tx_dropped, 5u);
  // A counter wide enough to touch the colon.
  EXPECT_EQ(interfaces["net1"].rx_bytes, 18446744073709551615u);
  EXPECT_EQ(interfaces["net1"].rx_packets, 7u);
  EXPECT_EQ(interfaces["net1"].tx_bytes, 1u);
}

TEST(ParseNetDevTest, NothingFromNothing) { EXPECT_TRUE(ParseNetDev("").empty()); }

}  // namespace
}  // namespace berth::pod
