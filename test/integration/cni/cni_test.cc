// CNI execution with Debian's plugins (bridge, host-local, loopback) in namespaces the test makes.

#include <net/if.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/process.h"
#include "cni/conf.h"
#include "cni/netns.h"
#include "cni/plugin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cni {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kBridge[] = "berthit0";
constexpr char kSystemPlugins[] = "/usr/lib/cni";

std::string Shell(const std::vector<std::string>& argv) {
  ProcessSpec spec{.argv = argv, .env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                   .timeout = std::chrono::seconds(20)};
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  return r.ok() ? r->stdout_data + r->stderr_data : std::string(r.status().message());
}

class CniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "network namespaces and bridges need root";
    if (::access((std::string(kSystemPlugins) + "/bridge").c_str(), X_OK) != 0) {
      GTEST_SKIP() << "containernetworking-plugins is not installed";
    }
    char tmpl[] = "/tmp/berth-cni-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(MakeDirs(dir_ + "/bin").ok());
    ASSERT_TRUE(MakeDirs(dir_ + "/net.d").ok());
    plugin_ = std::make_unique<CniExecPlugin>(CniExecPlugin::Options{
        .bin_dirs = {dir_ + "/bin", kSystemPlugins},
        .cache_dir = dir_ + "/cache",
        .timeout = std::chrono::seconds(2)});
  }

  void TearDown() override {
    if (dir_.empty()) return;
    for (const std::string& ns : namespaces_) (void)RemoveNetNs(ns);
    if (::if_nametoindex(kBridge) != 0) Shell({"/usr/sbin/ip", "link", "del", kBridge});
    std::filesystem::remove_all(dir_);
  }

  // The test network, with `extra` plugins appended to bridge + host-local.
  NetworkConf Network(const std::string& extra = "", const std::string& version = "1.0.0") {
    const std::string text = absl::StrCat(
        R"({"cniVersion": ")", version, R"(", "name": "berth-it", "plugins": [
          {"type": "bridge", "bridge": ")", kBridge, R"(", "isGateway": true, "ipMasq": false,
           "ipam": {"type": "host-local", "dataDir": ")", dir_, R"(/ipam",
                    "ranges": [[{"subnet": "10.252.7.0/24"}]]}},
          {"type": "loopback"})", extra, "]}");
    const std::string path = dir_ + "/net.d/10-berth-it.conflist";
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    absl::StatusOr<NetworkConf> conf = LoadNetworkConf(path);
    EXPECT_TRUE(conf.ok()) << conf.status();
    return conf.ok() ? *conf : NetworkConf{};
  }

  AttachSpec Pod(const std::string& id) {
    const std::string ns = dir_ + "/netns/" + id;
    absl::StatusOr<NetNs> netns = NetNs::Create(ns);
    EXPECT_TRUE(netns.ok()) << netns.status();
    if (netns.ok()) namespaces_.push_back(netns->Release());
    return AttachSpec{.container_id = id,
                      .netns_path = ns,
                      .args = {{"K8S_POD_NAMESPACE", "default"},
                               {"K8S_POD_NAME", id},
                               {"K8S_POD_INFRA_CONTAINER_ID", id}}};
  }

  void Script(const std::string& name, const std::string& add_body) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/" + name,
                                absl::StrCat("#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then\n",
                                             add_body, "\nfi\nexit 0\n"),
                                0755)
                    .ok());
  }

  size_t Reservations() {
    const std::string dir = dir_ + "/ipam/berth-it";
    if (!std::filesystem::exists(dir)) return 0;
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().filename().string().rfind("10.252.", 0) == 0) ++n;
    }
    return n;
  }

  std::string dir_;
  std::vector<std::string> namespaces_;
  std::unique_ptr<CniExecPlugin> plugin_;
};

TEST_F(CniTest, NetNsIsPinnedAndRemoved) {
  const std::string path = dir_ + "/ns/one";
  {
    absl::StatusOr<NetNs> ns = NetNs::Create(path);
    ASSERT_TRUE(ns.ok()) << ns.status();
    EXPECT_TRUE(IsNetNs(path));
    EXPECT_NE(std::filesystem::read_symlink("/proc/self/ns/net"),
              std::filesystem::path(Shell({"/usr/bin/readlink", path})));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(RemoveNetNs(path).ok());  // already gone: OK
}

TEST_F(CniTest, AttachCheckDetach) {
  NetworkConf network = Network();
  AttachSpec pod = Pod("pod-a");
  absl::StatusOr<Attachment> a = plugin_->Attach(network, pod);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->ips.size(), 1u);
  EXPECT_THAT(a->ips[0].address, StartsWith("10.252.7."));
  EXPECT_EQ(a->ips[0].gateway, "10.252.7.1");
  EXPECT_FALSE(a->ips[0].ipv6);
  EXPECT_THAT(Shell({"/usr/bin/nsenter", "--net=" + pod.netns_path, "/usr/sbin/ip", "-o", "addr",
                   "show", "eth0"}),
              HasSubstr(a->ips[0].address));
  EXPECT_EQ(Reservations(), 1u);
  absl::StatusOr<Attachment> cached = plugin_->Cached("pod-a", "eth0");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->ips[0].address, a->ips[0].address);
  EXPECT_TRUE(plugin_->Check(pod).ok());

  ASSERT_TRUE(plugin_->Detach(pod).ok());
  EXPECT_EQ(Reservations(), 0u);
  EXPECT_EQ(plugin_->Cached("pod-a", "eth0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(plugin_->Detach(pod).ok());  // idempotent
}

// A loopback plugin after the first is done in-process (lo set up, its prevResult passed on):
// berth never runs it. One first in the chain makes the result the rest build on, so it runs.
TEST_F(CniTest, ALoopbackPluginAfterTheFirstIsDoneInProcess) {
  const std::string calls = dir_ + "/loopback.calls";
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/loopback",
                              absl::StrCat("#!/bin/sh\necho \"$CNI_COMMAND\" >> ", calls, R"(
cat > /dev/null
echo '{"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "ips": []}'
)"),
                              0755)
                  .ok());
  AttachSpec pod = Pod("pod-lo");
  absl::StatusOr<Attachment> a = plugin_->Attach(Network(), pod);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->ips.size(), 1u);  // the bridge's result, passed on
  EXPECT_THAT(a->ips[0].address, StartsWith("10.252.7."));
  const std::string lo = Shell({"/usr/bin/nsenter", "--net=" + pod.netns_path, "/usr/sbin/ip",
                                "-o", "addr", "show", "lo"});
  EXPECT_THAT(lo, HasSubstr("127.0.0.1/8"));
  EXPECT_THAT(Shell({"/usr/bin/nsenter", "--net=" + pod.netns_path, "/usr/sbin/ip", "-o", "link",
                     "show", "lo"}),
              HasSubstr(",UP"));
  EXPECT_TRUE(plugin_->Check(pod).ok());
  ASSERT_TRUE(plugin_->Detach(pod).ok());
  EXPECT_FALSE(std::filesystem::exists(calls));

  // Loopback alone (first in its chain): run as configured.
  const std::string path = dir_ + "/net.d/05-lo.conflist";
  ASSERT_TRUE(WriteFileAtomic(path, R"({"cniVersion": "1.0.0", "name": "lo-only",
                                      "plugins": [{"type": "loopback"}]})")
                  .ok());
  absl::StatusOr<NetworkConf> lo_only = LoadNetworkConf(path);
  ASSERT_TRUE(lo_only.ok()) << lo_only.status();
  AttachSpec other = Pod("pod-lo-only");
  ASSERT_TRUE(plugin_->Attach(*lo_only, other).ok());
  ASSERT_TRUE(plugin_->Detach(other).ok());
  absl::StatusOr<std::string> ran = ReadFile(calls);
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, "ADD\nDEL\n");
}

TEST_F(CniTest, DetachWorksWhenTheNamespaceIsGone) {
  for (const std::string version : {"1.0.0", "0.4.0", "0.3.1"}) {
    NetworkConf network = Network("", version);
    AttachSpec pod = Pod("pod-gone-" + std::string(version == "1.0.0" ? "a" : version == "0.4.0" ? "b" : "c"));
    absl::StatusOr<Attachment> a = plugin_->Attach(network, pod);
    ASSERT_TRUE(a.ok()) << version << ": " << a.status();
    ASSERT_TRUE(RemoveNetNs(pod.netns_path).ok());
    absl::Status detached = plugin_->Detach(pod);
    EXPECT_TRUE(detached.ok()) << version << ": " << detached;
    EXPECT_EQ(Reservations(), 0u) << version;
  }
}

// A pin unmounted under berthd (the file stays, no namespace behind it): DEL passes no namespace,
// as for one that is gone, and the address is released; the bridge plugin fails on such a path.
TEST_F(CniTest, DetachWorksWhenThePinIsNoLongerANamespace) {
  AttachSpec pod = Pod("pod-unpinned");
  absl::StatusOr<Attachment> a = plugin_->Attach(Network(), pod);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(::umount2(pod.netns_path.c_str(), MNT_DETACH), 0);
  ASSERT_TRUE(std::filesystem::exists(pod.netns_path));
  ASSERT_FALSE(IsNetNs(pod.netns_path));
  absl::Status detached = plugin_->Detach(pod);
  EXPECT_TRUE(detached.ok()) << detached;
  EXPECT_EQ(Reservations(), 0u);
  EXPECT_EQ(plugin_->Cached("pod-unpinned", "eth0").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CniTest, FailingPluginIsReportedAndUndone) {
  Script("failer", R"(echo '{"cniVersion":"1.0.0","code":100,"msg":"boom","details":"the details"}'
echo 'said on stderr' >&2
exit 1)");
  NetworkConf network = Network(R"(, {"type": "failer"})");
  AttachSpec pod = Pod("pod-fail");
  absl::StatusOr<Attachment> a = plugin_->Attach(network, pod);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInternal);
  const std::string message(a.status().message());
  EXPECT_THAT(message, HasSubstr("CNI ADD failer failed (exit 1): boom: the details (code 100)"));
  EXPECT_THAT(message, HasSubstr("said on stderr"));
  EXPECT_EQ(Reservations(), 0u);  // the bridge's IP was given back
  EXPECT_EQ(plugin_->Cached("pod-fail", "eth0").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CniTest, AnAddCutShortIsUndoneFromTheCacheWrittenBeforeIt) {
  // The last plugin of the chain takes a copy of the cache as it is while the chain runs: what a
  // berthd killed at that moment leaves (the bridge has reserved an IP by then).
  Script("snapshot", absl::StrCat("cp ", dir_, "/cache/pod-cut-eth0.json ", dir_,
                                  "/snapshot.json || exit 1\necho '{\"cniVersion\":\"1.0.0\"}'"));
  NetworkConf network = Network(R"(, {"type": "snapshot"})");
  AttachSpec pod = Pod("pod-cut");
  ASSERT_TRUE(plugin_->Attach(network, pod).ok());
  ASSERT_EQ(Reservations(), 1u);
  std::filesystem::rename(dir_ + "/snapshot.json", dir_ + "/cache/pod-cut-eth0.json");

  // The next start finds it in the cache, with what DEL needs, and releases the IP.
  std::vector<AttachSpec> cached = plugin_->CachedAttachments();
  ASSERT_EQ(cached.size(), 1u);
  EXPECT_EQ(cached[0].container_id, "pod-cut");
  EXPECT_EQ(cached[0].netns_path, pod.netns_path);
  EXPECT_EQ(cached[0].args, pod.args);
  ASSERT_TRUE(plugin_->Detach(cached[0]).ok());
  EXPECT_EQ(Reservations(), 0u);
  EXPECT_TRUE(plugin_->CachedAttachments().empty());
}

TEST_F(CniTest, HangingPluginTimesOut) {
  Script("hanger", "sleep 30");
  NetworkConf network = Network(R"(, {"type": "hanger"})");
  AttachSpec pod = Pod("pod-hang");
  absl::StatusOr<Attachment> a = plugin_->Attach(network, pod);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kDeadlineExceeded) << a.status();
  EXPECT_EQ(Reservations(), 0u);
  EXPECT_EQ(Shell({"/usr/bin/pgrep", "-f", dir_ + "/bin/hanger"}), "");
}

TEST_F(CniTest, MissingPluginIsNamed) {
  NetworkConf network = Network(R"(, {"type": "no-such-plugin"})");
  absl::StatusOr<Attachment> a = plugin_->Attach(network, Pod("pod-missing"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("\"no-such-plugin\" not found"));
  EXPECT_EQ(Reservations(), 0u);
}

TEST_F(CniTest, CapabilitiesReachOnlyThePluginsThatAskForThem) {
  Script("recorder", absl::StrCat("cat > ", dir_, "/recorded.json\necho \"$CNI_ARGS\" > ", dir_,
                                  "/args.txt\necho '{\"cniVersion\":\"1.0.0\"}'"));
  NetworkConf network = Network(R"(, {"type": "recorder", "capabilities": {"portMappings": true}})");
  AttachSpec pod = Pod("pod-caps");
  pod.port_mappings = {{.protocol = "tcp", .container_port = 80, .host_port = 8080}};
  pod.dns = DnsConfig{.servers = {"10.0.0.10"}};
  absl::StatusOr<Attachment> a = plugin_->Attach(network, pod);
  ASSERT_TRUE(a.ok()) << a.status();
  std::ifstream recorded(dir_ + "/recorded.json");
  std::string conf((std::istreambuf_iterator<char>(recorded)), {});
  EXPECT_THAT(conf, HasSubstr(R"("portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}])"));
  EXPECT_THAT(conf, ::testing::Not(HasSubstr("10.0.0.10")));  // dns was not asked for
  EXPECT_THAT(conf, HasSubstr(R"("prevResult")"));
  std::ifstream args(dir_ + "/args.txt");
  std::string cni_args((std::istreambuf_iterator<char>(args)), {});
  EXPECT_THAT(cni_args, HasSubstr("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-caps"));
  ASSERT_TRUE(plugin_->Detach(pod).ok());
}

}  // namespace
}  // namespace berth::cni
