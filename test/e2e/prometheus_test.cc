// A real Prometheus (Debian's) scrapes a running berthd with contrib/prometheus's alerting rules
// loaded: the target is up, PromQL over its HTTP API returns berth's series, and every rule
// evaluates without error.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"
#include "test/lib/http.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

constexpr char kPrometheus[] = "/usr/bin/prometheus";

// PromQL `query` over Prometheus's HTTP API (escaping what the queries below use).
nlohmann::json Query(const std::string& prometheus, const std::string& query) {
  std::string escaped;
  for (char c : query) {
    if (c == ' ') {
      escaped += "%20";
    } else if (c == '{' || c == '}' || c == '"' || c == '=' || c == '>' || c == '<') {
      escaped += absl::StrCat("%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      escaped += c;
    }
  }
  absl::StatusOr<HttpResponse> got = HttpGet(prometheus, "/api/v1/query?query=" + escaped);
  if (!got.ok() || got->status != 200) return nullptr;
  return nlohmann::json::parse(got->body, nullptr, false);
}

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "e2e tests run as root";
    auto daemon = BerthDaemon::Create();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    ASSERT_TRUE(daemon_->Start().ok());
    dir_ = daemon_->dir() + "/prometheus";
    ASSERT_TRUE(MakeDirs(dir_).ok());
    const std::string rules =
        std::string(BERTH_SOURCE_DIR) + "/contrib/prometheus/berth-rules.yml";
    const std::string config = absl::StrCat(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n", "rule_files: [", rules,
        "]\n", "scrape_configs:\n", "  - job_name: berth\n", "    static_configs: [{targets: [\"",
        daemon_->metrics_address(), "\"]}]\n");
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/prometheus.yml", config).ok());
    address_ = absl::StrCat("127.0.0.1:", FreeTcpPort());
    absl::StatusOr<pid_t> pid = SpawnWithLog(
        {kPrometheus, "--config.file=" + dir_ + "/prometheus.yml",
         "--storage.tsdb.path=" + dir_ + "/data", "--web.listen-address=" + address_},
        dir_ + "/log");
    ASSERT_TRUE(pid.ok()) << pid.status();
    prometheus_ = *pid;
  }

  void TearDown() override {
    if (prometheus_ > 0) {
      ::kill(prometheus_, SIGKILL);
      (void)WaitFor(prometheus_, std::chrono::seconds(10));
    }
    daemon_.reset();
  }

  std::string Log() const {
    absl::StatusOr<std::string> log = ReadFile(dir_ + "/log");
    return log.ok() ? *log : "";
  }

  std::unique_ptr<BerthDaemon> daemon_;
  std::string dir_;
  std::string address_;
  pid_t prometheus_ = -1;
};

TEST_F(PrometheusTest, ScrapesBerthdAndEvaluatesTheRules) {
  // The target is up once Prometheus has scraped it.
  auto value_of = [&](const std::string& query) -> std::string {
    nlohmann::json r = Query(address_, query);
    if (!r.is_object() || r.value("status", "") != "success") return "";
    const nlohmann::json& result = r["data"]["result"];
    if (!result.is_array() || result.empty()) return "";
    return result[0]["value"][1].get<std::string>();
  };
  ASSERT_TRUE(Eventually([&] { return value_of(R"(up{job="berth"})") == "1"; },
                         std::chrono::seconds(60)))
      << Log();
  EXPECT_EQ(value_of(R"(berth_pods{job="berth", state="ready"})"), "0");
  EXPECT_EQ(value_of(R"(sum(berth_containers{job="berth"}))"), "0");
  EXPECT_EQ(value_of(R"(berth_recovery_objects{what="containers_loaded"})"), "0");
  EXPECT_NE(value_of(R"(process_resident_memory_bytes{job="berth"} > 1000000)"), "");
  EXPECT_NE(value_of(R"(berth_operations_total{operation="Version"} > 0)"), "");

  // Every rule of contrib/prometheus evaluates cleanly against what berthd serves, and none fires
  // on an idle node.
  ASSERT_TRUE(Eventually(
      [&] {
        absl::StatusOr<HttpResponse> rules = HttpGet(address_, "/api/v1/rules");
        if (!rules.ok() || rules->status != 200) return false;
        nlohmann::json r = nlohmann::json::parse(rules->body, nullptr, false);
        if (!r.is_object() || r["data"]["groups"].empty()) return false;
        for (const auto& rule : r["data"]["groups"][0]["rules"]) {
          if (rule.value("health", "") != "ok") return false;
        }
        return true;
      },
      std::chrono::seconds(30)))
      << Log();
  absl::StatusOr<HttpResponse> rules = HttpGet(address_, "/api/v1/rules");
  ASSERT_TRUE(rules.ok());
  nlohmann::json r = nlohmann::json::parse(rules->body, nullptr, false);
  EXPECT_EQ(r["data"]["groups"][0]["rules"].size(), 10u);
  for (const auto& rule : r["data"]["groups"][0]["rules"]) {
    EXPECT_EQ(rule.value("health", ""), "ok") << rule.dump();
    EXPECT_NE(rule.value("state", ""), "firing") << rule.dump();
  }
}

}  // namespace
}  // namespace berth::testing
