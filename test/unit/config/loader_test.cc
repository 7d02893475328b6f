#include "config/loader.h"

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace berth::config {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Applies `yaml` over the defaults as "test.yaml" and returns the error message ("" if it applied
// and validated).
std::string ErrorOf(const std::string& yaml) {
  Config config;
  Origins origins;
  absl::Status status = ApplyYaml(yaml, "test.yaml", config, &origins);
  if (status.ok()) status = Validate(config, &origins);
  if (!status.ok()) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  }
  return std::string(status.message());
}

Config Applied(const std::string& yaml) {
  Config config;
  absl::Status status = ApplyYaml(yaml, "test.yaml", config);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
  return config;
}

TEST(ApplyYamlTest, EmptyDocumentKeepsDefaults) {
  EXPECT_EQ(Applied(""), Config{});
  EXPECT_EQ(Applied("# only a comment\n"), Config{});
}

TEST(ApplyYamlTest, DefaultsAreWhatTheIssueSpecifies) {
  Config c;
  EXPECT_EQ(c.root, "/var/lib/berth");
  EXPECT_EQ(c.run_root, "/run/berth");
  EXPECT_EQ(c.listen, "/run/berth/berth.sock");
  EXPECT_EQ(c.runtimes.at("runc").path, "/usr/sbin/runc");
  EXPECT_EQ(c.runtimes.at("crun").root, "/run/berth/crun");
  EXPECT_EQ(c.streaming.idle_timeout, std::chrono::hours(4));
  EXPECT_EQ(c.metrics.address, "127.0.0.1:9537");
  EXPECT_TRUE(c.monitor.per_pod());  // berth-conmon, one per pod
  c.monitor.path = "/usr/bin/conmon";
  EXPECT_FALSE(c.monitor.per_pod());  // upstream conmon knows one container only
  c.monitor.path.clear();
  EXPECT_TRUE(Validate(c).ok());
}

TEST(ApplyYamlTest, ExampleConfigIsValidAndDescribesTheDefaultsAndRegistries) {
  absl::StatusOr<std::string> text = ReadFile(BERTH_EXAMPLE_CONFIG);
  ASSERT_TRUE(text.ok()) << text.status();
  Config config = Applied(*text);
  ASSERT_EQ(config.images.registries.size(), 2u);
  EXPECT_TRUE(config.images.registries[0].insecure);
  EXPECT_EQ(config.images.registries[1].mirrors.at(0).location, "127.0.0.1:5000");
}

TEST(ApplyYamlTest, SetsEveryKey) {
  Config c = Applied(R"(
root: /a/root
run_root: /a/run
listen: /a/run/s.sock
log_level: debug
cgroup_manager: systemd
default_runtime: kata
runtimes:
  runc: {path: /opt/runc}
  kata: {path: /opt/kata, root: /run/kata, allowed_annotations: ["io.katacontainers."]}
monitor: {path: /usr/bin/conmon, log_size_max: 8192, exec_sync_output_max: 65536, mode: container,
          exec_sync: runtime}
pause: {image: "registry.k8s.io/pause:3.10"}
network: {conf_dir: /etc/cni/x, bin_dirs: [/b], default_network: net}
images:
  registries:
    - {prefix: "127.0.0.1:5000", insecure: true}
    - {prefix: registry.k8s.io, mirrors: [{location: "127.0.0.1:5000", insecure: true}]}
    - {prefix: gcr.io, location: "127.0.0.1:5000"}
  auth_file: /etc/auth.json
  parallel_downloads: 8
  max_layer_size: 1000
  max_image_size: 2000
  max_layer_entries: 30
  max_path_depth: 40
  stall_timeout: 10s
  pull_timeout: 5m
  pinned: ["registry.k8s.io/pause*"]
streaming: {address: 0.0.0.0, port: 10010, idle_timeout: 1h30m, tls_cert: /c, tls_key: /k}
metrics: {enabled: false, address: "[::1]:9090"}
)");
  EXPECT_EQ(c.root, "/a/root");
  EXPECT_EQ(c.run_root, "/a/run");
  EXPECT_EQ(c.listen, "/a/run/s.sock");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.cgroup_manager, "systemd");
  EXPECT_EQ(c.default_runtime, "kata");
  EXPECT_EQ(c.runtimes.size(), 3u);
  EXPECT_EQ(c.runtimes.at("runc").path, "/opt/runc");
  EXPECT_EQ(c.runtimes.at("runc").root, "/run/berth/runc");  // merged per field
  EXPECT_EQ(c.runtimes.at("kata").root, "/run/kata");
  EXPECT_THAT(c.runtimes.at("kata").allowed_annotations, ElementsAre("io.katacontainers."));
  EXPECT_EQ(c.monitor.path, "/usr/bin/conmon");
  EXPECT_EQ(c.monitor.log_size_max, 8192);
  EXPECT_EQ(c.monitor.exec_sync_output_max, 65536);
  EXPECT_EQ(c.monitor.mode, "container");
  EXPECT_EQ(c.monitor.exec_sync, "runtime");
  EXPECT_FALSE(c.monitor.per_pod());
  EXPECT_EQ(c.pause.image, "registry.k8s.io/pause:3.10");
  EXPECT_EQ(c.network.conf_dir, "/etc/cni/x");
  EXPECT_THAT(c.network.bin_dirs, ElementsAre("/b"));
  EXPECT_EQ(c.network.default_network, "net");
  ASSERT_EQ(c.images.registries.size(), 3u);
  EXPECT_EQ(c.images.registries[2].location, "127.0.0.1:5000");
  EXPECT_FALSE(c.images.registries[2].insecure);
  EXPECT_EQ(c.images.auth_file, "/etc/auth.json");
  EXPECT_EQ(c.images.parallel_downloads, 8);
  EXPECT_EQ(c.images.max_layer_size, 1000);
  EXPECT_EQ(c.images.max_image_size, 2000);
  EXPECT_EQ(c.images.max_layer_entries, 30);
  EXPECT_EQ(c.images.max_path_depth, 40);
  EXPECT_EQ(c.images.stall_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c.images.pull_timeout, std::chrono::minutes(5));
  EXPECT_THAT(c.images.pinned, ElementsAre("registry.k8s.io/pause*"));
  EXPECT_EQ(c.streaming.address, "0.0.0.0");
  EXPECT_EQ(c.streaming.port, 10010);
  EXPECT_EQ(c.streaming.idle_timeout, std::chrono::minutes(90));
  EXPECT_FALSE(c.metrics.enabled);
  EXPECT_EQ(c.metrics.address, "[::1]:9090");
}

TEST(ApplyYamlTest, NullHandlerRemovesIt) {
  Config c = Applied("runtimes: {crun: ~}\n");
  EXPECT_FALSE(c.runtimes.contains("crun"));
  EXPECT_TRUE(c.runtimes.contains("runc"));
}

TEST(ApplyYamlTest, YamlRoundTrip) {
  Config c = Applied(R"(
log_level: warn
runtimes: {kata: {path: /opt/kata, root: /run/kata}}
images:
  registries:
    - {prefix: "a:1", insecure: true}
    - {prefix: b, mirrors: [{location: "m:2", insecure: true}, {location: m3}]}
    - {prefix: c, location: "x:5000"}
  pinned: [p1, "p 2"]
streaming: {idle_timeout: 45s}
monitor: {path: ""}
)");
  Config back;
  ASSERT_TRUE(ApplyYaml(ToYaml(c), "printed", back).ok()) << ToYaml(c);
  EXPECT_EQ(back, c) << ToYaml(c);
  EXPECT_EQ(Applied(ToYaml(Config{})), Config{});
}

TEST(ApplyYamlTest, YamlRoundTripKeepsARemovedDefaultHandlerRemoved) {
  // Found by test/fuzz/config_fuzz: the printed runtimes merged back into the defaults.
  Config c = Applied("runtimes: {crun: ~}\n");
  Config back;
  ASSERT_TRUE(ApplyYaml(ToYaml(c), "printed", back).ok()) << ToYaml(c);
  EXPECT_FALSE(back.runtimes.contains("crun")) << ToYaml(c);
  EXPECT_EQ(back, c) << ToYaml(c);
}

TEST(ApplyYamlTest, JsonHasEveryTopLevelKey) {
  nlohmann::json j = nlohmann::json::parse(ToJson(Config{}));
  for (const char* key : {"root", "run_root", "listen", "log_level", "log_format",
                          "cgroup_manager", "default_runtime", "runtimes", "monitor", "pause",
                          "network", "images", "streaming", "metrics"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["streaming"]["idle_timeout"], "4h");
  EXPECT_EQ(j["runtimes"]["runc"]["path"], "/usr/sbin/runc");
}

TEST(ApplyYamlTest, TextThatIsNotUtf8IsRefused) {
  // Found by test/fuzz/config_fuzz: such bytes were kept, and printed back (ToYaml) as U+FFFD.
  Config c;
  absl::Status s = ApplyYaml("log_level: info\nroot: /var/lib/b\xff" "rth\n", "t.yaml", c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "t.yaml:2:17: not UTF-8 text");
  for (const char* bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    EXPECT_FALSE(ApplyYaml(absl::StrCat("root: /x", bad, "\n"), "t.yaml", c).ok()) << bad;
  }
  EXPECT_TRUE(ApplyYaml("root: /var/lib/b\xc3\xa9rth\xf0\x9f\x90\xb3\n", "t.yaml", c).ok());
  EXPECT_EQ(c.root, "/var/lib/b\xc3\xa9rth\xf0\x9f\x90\xb3");
}

TEST(ApplyYamlTest, JsonOfStringsThatAreNotUtf8) {
  // Found by test/fuzz/config_fuzz: nlohmann's dump threw on the byte 0xff (flags are bytes).
  Config c;
  c.root = "/var/lib/b\xff" "rth";
  EXPECT_EQ(nlohmann::json::parse(ToJson(c))["root"], "/var/lib/b\uFFFDrth");
}

TEST(DurationTest, ParsesAndFormats) {
  EXPECT_EQ(*ParseDuration("4h"), std::chrono::hours(4));
  EXPECT_EQ(*ParseDuration("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(*ParseDuration("90s"), std::chrono::seconds(90));
  EXPECT_FALSE(ParseDuration("4").ok());
  EXPECT_FALSE(ParseDuration("soon").ok());
  EXPECT_FALSE(ParseDuration("500ms").ok());
  EXPECT_FALSE(ParseDuration("-1h").ok());
  EXPECT_EQ(FormatDuration(std::chrono::hours(4)), "4h");
  EXPECT_EQ(FormatDuration(std::chrono::seconds(5400)), "1h30m");
}

// Every error names the file, the line (and column) and the key.
struct BadCase {
  const char* yaml;
  const char* location;  // "test.yaml:<line>:"
  const char* key;
  const char* problem;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.key; }

class ValidationErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ValidationErrorTest, NamesFileLineAndKey) {
  const BadCase& c = GetParam();
  std::string message = ErrorOf(c.yaml);
  EXPECT_THAT(message, AllOf(HasSubstr(c.location), HasSubstr(c.key), HasSubstr(c.problem)));
}

INSTANTIATE_TEST_SUITE_P(
    All, ValidationErrorTest,
    ::testing::Values(
        BadCase{"root: /r\n\nbogus_key: 1\n", "test.yaml:3:1", "bogus_key", "unknown key"},
        BadCase{"network:\n  confdir: /x\n", "test.yaml:2:3", "network.confdir", "unknown key"},
        BadCase{"root: [a]\n", "test.yaml:1:7", "root", "expected a string"},
        BadCase{"root: relative\n", "test.yaml:1:7", "root", "absolute path"},
        BadCase{"listen: ''\n", "test.yaml:1:9", "listen", "absolute path"},
        BadCase{"log_level: loud\n", "test.yaml:1:12", "log_level", "trace, debug"},
        BadCase{"log_format: xml\n", "test.yaml:1:13", "log_format", "text, json"},
        BadCase{"cgroup_manager: cgroupv3\n", "test.yaml:1:", "cgroup_manager", "systemd"},
        BadCase{"root: /a\nroot: /b\n", "test.yaml:2:1", "root", "twice"},
        BadCase{"network: /x\n", "test.yaml:1:10", "network", "expected a mapping"},
        BadCase{"runtimes:\n  'bad name': {path: /x, root: /y}\n", "test.yaml:2:3",
                "runtimes.bad name", "handler name"},
        BadCase{"runtimes:\n  kata: {path: kata, root: /y}\n", "test.yaml:2:", "runtimes.kata.path",
                "absolute"},
        BadCase{"runtimes:\n  kata: {path: /opt/kata}\n", "test.yaml:2:", "runtimes.kata.root",
                "absolute path is required"},
        BadCase{"runtimes:\n  runc: {sbin: /x}\n", "test.yaml:2:", "runtimes.runc.sbin",
                "unknown key"},
        BadCase{"default_runtime: kata\n", "test.yaml:1:18", "default_runtime",
                "not a configured runtime"},
        BadCase{"runtimes: {runc: ~}\n", "test.yaml:", "default_runtime",
                "not a configured runtime"},
        BadCase{"monitor: {log_size_max: 100}\n", "test.yaml:1:25", "monitor.log_size_max",
                "8192"},
        BadCase{"monitor: {log_size_max: lots}\n", "test.yaml:1:25", "monitor.log_size_max",
                "expected an integer"},
        BadCase{"monitor: {path: conmon}\n", "test.yaml:1:17", "monitor.path", "absolute"},
        BadCase{"monitor: {exec_sync_output_max: 100}\n", "test.yaml:1:",
                "monitor.exec_sync_output_max", "out of range"},
        BadCase{"monitor: {mode: shared}\n", "test.yaml:1:", "monitor.mode",
                "not one of auto, pod, container"},
        BadCase{"monitor: {exec_sync: nsenter}\n", "test.yaml:1:", "monitor.exec_sync",
                "not one of berth, runtime"},
        BadCase{"network: {bin_dirs: []}\n", "test.yaml:1:", "network.bin_dirs", "at least one"},
        BadCase{"network: {bin_dirs: [/a, b]}\n", "test.yaml:1:", "network.bin_dirs[1]",
                "absolute"},
        BadCase{"network: {bin_dirs: /a}\n", "test.yaml:1:", "network.bin_dirs", "list"},
        BadCase{"images: {parallel_downloads: 0}\n", "test.yaml:1:", "images.parallel_downloads",
                "out of range"},
        BadCase{"images: {parallel_downloads: 65}\n", "test.yaml:1:",
                "images.parallel_downloads", "out of range"},
        BadCase{"images: {max_layer_size: 0}\n", "test.yaml:1:", "images.max_layer_size",
                "at least 1"},
        BadCase{"images: {max_path_depth: 5000}\n", "test.yaml:1:", "images.max_path_depth",
                "out of range"},
        BadCase{"images: {max_layer_entries: many}\n", "test.yaml:1:",
                "images.max_layer_entries", "expected an integer"},
        BadCase{"images: {stall_timeout: 0}\n", "test.yaml:1:", "images.stall_timeout",
                "shorter than one second"},
        BadCase{"images: {pull_timeout: soon}\n", "test.yaml:1:", "images.pull_timeout",
                "not a duration"},
        BadCase{"images:\n  registries:\n    - {insecure: true}\n", "test.yaml:3:",
                "images.registries[0].prefix", "required"},
        BadCase{"images:\n  registries:\n    - {prefix: a}\n    - {prefix: a}\n", "test.yaml:4:",
                "images.registries[1].prefix", "already configured"},
        BadCase{"images:\n  registries:\n    - {prefix: a, location: b, mirrors: [{location: c}]}\n",
                "test.yaml:3:", "images.registries[0]", "not both"},
        BadCase{"images:\n  registries:\n    - {prefix: a, mirrors: [{insecure: true}]}\n",
                "test.yaml:3:", "images.registries[0].mirrors[0].location", "required"},
        BadCase{"images:\n  registries:\n    - {prefix: a, insecure: yes please}\n",
                "test.yaml:3:", "images.registries[0].insecure", "true or false"},
        BadCase{"images: {auth_file: auth.json}\n", "test.yaml:1:", "images.auth_file",
                "absolute"},
        BadCase{"images: {pinned: ['']}\n", "test.yaml:1:", "images.pinned[0]", "empty"},
        BadCase{"streaming: {port: 70000}\n", "test.yaml:1:19", "streaming.port", "out of range"},
        BadCase{"streaming: {port: -1}\n", "test.yaml:1:19", "streaming.port", "out of range"},
        BadCase{"streaming: {idle_timeout: 0s}\n", "test.yaml:1:", "streaming.idle_timeout",
                "shorter than one second"},
        BadCase{"streaming: {idle_timeout: forever}\n", "test.yaml:1:",
                "streaming.idle_timeout", "duration"},
        BadCase{"streaming:\n  tls_cert: /c\n", "test.yaml:2:", "streaming.tls_key", "together"},
        BadCase{"streaming: {address: ''}\n", "test.yaml:1:", "streaming.address", "empty"},
        BadCase{"metrics: {enabled: 1}\n", "test.yaml:1:", "metrics.enabled", "true or false"},
        BadCase{"metrics: {address: localhost}\n", "test.yaml:1:", "metrics.address",
                "host:port"},
        BadCase{"metrics: {address: 'h:0'}\n", "test.yaml:1:", "metrics.address", "port"},
        BadCase{"- just\n- a list\n", "test.yaml:1:1", "(top level)", "expected a mapping"},
        BadCase{"root: /a\n  bad: [indent\n", "test.yaml:", "", ""}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      std::string name = absl::StrCat(info.index, "_");
      for (const char* p = info.param.key; *p != '\0'; ++p) {
        name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
      }
      return name;
    });

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-config-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.config_file = dir_ + "/berth.yaml";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& relative, const std::string& content) {
    ASSERT_TRUE(MakeDirs(DirName(dir_ + "/" + relative)).ok());
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/" + relative, content).ok());
  }

  std::string dir_;
  LoadOptions options_;
};

TEST_F(LoadTest, MissingOptionalFileGivesDefaults) {
  absl::StatusOr<Config> c = Load(options_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, Config{});
}

TEST_F(LoadTest, MissingRequiredFileIsNotFound) {
  options_.config_file_required = true;
  absl::StatusOr<Config> c = Load(options_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("berth.yaml"));
}

TEST_F(LoadTest, DropInsApplyInLexicalOrderAfterTheMainFile) {
  Write("berth.yaml", "log_level: debug\nroot: /main\nrun_root: /main-run\n");
  Write("berth.d/20-b.yaml", "root: /from-b\nimages: {pinned: [b]}\n");
  Write("berth.d/10-a.yaml", "root: /from-a\nrun_root: /from-a-run\nimages: {pinned: [a, a2]}\n");
  Write("berth.d/30-ignored.yml", "root: /ignored\n");
  Write("berth.d/README", "not yaml at all: [\n");
  absl::StatusOr<Config> c = Load(options_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->root, "/from-b");
  EXPECT_EQ(c->run_root, "/from-a-run");
  EXPECT_THAT(c->images.pinned, ElementsAre("b"));  // lists replace, not append
}

TEST_F(LoadTest, DropInDirectoryCanBeGiven) {
  Write("elsewhere/x.yaml", "log_level: error\n");
  options_.drop_in_dir = dir_ + "/elsewhere";
  absl::StatusOr<Config> c = Load(options_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_level, "error");
}

TEST_F(LoadTest, FlagsWinOverFiles) {
  Write("berth.yaml", "root: /file\nlog_level: debug\n");
  Write("berth.d/a.yaml", "listen: /file/s.sock\n");
  options_.root = "/flag-root";
  options_.run_root = "/flag-run";
  options_.listen = "/flag/s.sock";
  options_.log_level = "warn";
  absl::StatusOr<Config> c = Load(options_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->root, "/flag-root");
  EXPECT_EQ(c->run_root, "/flag-run");
  EXPECT_EQ(c->listen, "/flag/s.sock");
  EXPECT_EQ(c->log_level, "warn");
}

TEST_F(LoadTest, BadFlagIsNamed) {
  options_.log_level = "chatty";
  absl::StatusOr<Config> c = Load(options_);
  EXPECT_THAT(c.status().message(), AllOf(HasSubstr("--log-level flag"), HasSubstr("chatty")));
}

TEST_F(LoadTest, ErrorInDropInNamesThatFile) {
  Write("berth.yaml", "root: /ok\n");
  Write("berth.d/50-bad.yaml", "# comment\nmetrics:\n  enabeld: true\n");
  absl::StatusOr<Config> c = Load(options_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(),
              AllOf(HasSubstr("berth.d/50-bad.yaml:3:3"), HasSubstr("metrics.enabeld")));
}

TEST_F(LoadTest, CrossFieldErrorNamesWhereTheKeyWasSet) {
  Write("berth.yaml", "root: /ok\n");
  Write("berth.d/a.yaml", "\ndefault_runtime: kata\n");
  absl::StatusOr<Config> c = Load(options_);
  EXPECT_THAT(c.status().message(),
              AllOf(HasSubstr("berth.d/a.yaml:2:18"), HasSubstr("default_runtime")));
}

}  // namespace
}  // namespace berth::config
