#include "base/reaper.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/file_util.h"

namespace berth {
namespace {

std::mutex& Mutex() {
  static std::mutex mu;
  return mu;
}
// Children some caller waits for itself: SpawnProcess's until ReapChild, claimed ones.
std::set<pid_t>& Owned() {
  static std::set<pid_t> owned;
  return owned;
}

// How many ClaimPending are held.
int& Pending() {
  static int pending = 0;
  return pending;
}

// Every child of every thread of this process.
std::vector<pid_t> Children() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "children");
    pid_t pid = 0;
    while (in >> pid) out.push_back(pid);
  }
  return out;
}

}  // namespace

absl::Status BecomeSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return ErrnoToStatus(errno, "become subreaper");
  return absl::OkStatus();
}

int ReapChild(pid_t pid) {
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  {
    std::lock_guard lock(Mutex());
    Owned().erase(pid);
  }
  return got == pid ? status : -1;
}

void ClaimChild(pid_t pid) {
  std::lock_guard lock(Mutex());
  Owned().insert(pid);
}

int ReapAdoptedChildren(std::chrono::seconds young, bool* deferred) {
  *deferred = false;
  int reaped = 0;
  for (pid_t pid : Children()) {
    std::lock_guard lock(Mutex());
    if (Owned().contains(pid)) continue;
    if (Pending() > 0) {
      std::optional<std::chrono::milliseconds> age = ProcessAge(pid);
      if (!age || *age < young) {
        *deferred = true;
        continue;
      }
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) ++reaped;
  }
  return reaped;
}

ClaimPending::ClaimPending() {
  std::lock_guard lock(Mutex());
  ++Pending();
}

ClaimPending::~ClaimPending() {
  std::lock_guard lock(Mutex());
  --Pending();
}

std::optional<std::chrono::milliseconds> ProcessAge(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  absl::StatusOr<std::string> uptime = ReadFile("/proc/uptime");
  if (!stat.ok() || !uptime.ok()) return std::nullopt;
  // Field 22, the start in clock ticks after boot, counted from the fields after "(comm)".
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(paren + 1), ' ', absl::SkipEmpty());
  int64_t ticks = 0;
  double up = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &ticks) ||
      !absl::SimpleAtod(uptime->substr(0, uptime->find(' ')), &up)) {
    return std::nullopt;
  }
  const double started = static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return std::chrono::milliseconds(static_cast<int64_t>((up - started) * 1000));
}

namespace internal {
std::unique_lock<std::mutex> LockChildren() { return std::unique_lock(Mutex()); }
void RecordSpawned(pid_t pid) { Owned().insert(pid); }
}  // namespace internal

}  // namespace berth
