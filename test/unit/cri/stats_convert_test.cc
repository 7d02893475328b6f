#include "cri/stats_convert.h"

#include "gtest/gtest.h"

namespace berth::cri {
namespace {

TEST(FillNetworkTest, Eth0IsTheDefaultInterface) {
  runtime::v1::NetworkUsage n;
  ASSERT_TRUE(FillNetwork({{"eth0", {.rx_bytes = 10, .tx_bytes = 20}}, {"net1", {.rx_bytes = 1}}},
                          42, &n));
  EXPECT_EQ(n.timestamp(), 42);
  ASSERT_EQ(n.interfaces_size(), 2);
  EXPECT_EQ(n.default_interface().name(), "eth0");
  EXPECT_EQ(n.default_interface().rx_bytes().value(), 10u);
  EXPECT_EQ(n.default_interface().tx_bytes().value(), 20u);
}

TEST(FillNetworkTest, WithoutEth0TheFirstIsTheDefault) {
  runtime::v1::NetworkUsage n;
  ASSERT_TRUE(FillNetwork({{"net1", {.rx_bytes = 1}}, {"net2", {}}}, 1, &n));
  EXPECT_EQ(n.default_interface().name(), "net1");
}

// A pod whose network namespace is gone (its pause exited, not yet noticed) or has only
// loopback: no network at all, never one without a default interface (kubelet v1.28's summary
// API dereferences it and crashes).
TEST(FillNetworkTest, NoInterfacesNoNetwork) {
  runtime::v1::NetworkUsage n;
  EXPECT_FALSE(FillNetwork({}, 1, &n));
  EXPECT_FALSE(n.has_default_interface());
  EXPECT_EQ(n.interfaces_size(), 0);
}

}  // namespace
}  // namespace berth::cri
