#include "pod/cgroup_support.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace berth::pod {
namespace {

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

bool IsDir(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

std::set<std::string> ReadWords(const std::string& path) {
  std::ifstream in(path);
  std::set<std::string> words;
  std::string word;
  while (in >> word) words.insert(word);
  return words;
}

// /proc/self/cgroup: "4:memory:/a" per v1 hierarchy ("2:cpu,cpuacct:/a" when co-mounted) and
// "0::/b" for the unified one.
struct SelfCgroup {
  std::vector<std::pair<std::string, std::string>> v1;  // hierarchy -> our path in it
  std::string v2 = "/";
};

SelfCgroup ReadSelfCgroup(const std::string& path) {
  SelfCgroup self;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[1].empty()) {
      self.v2 = parts[2];
    } else {
      self.v1.emplace_back(parts[1], parts[2]);
    }
  }
  return self;
}

// Where a v1 hierarchy is mounted under the root: "cpu,cpuacct" or one of its names (the usual
// symlinks), "systemd" for name=systemd. "" if nowhere.
std::string V1MountDir(const std::string& root, const std::string& hierarchy) {
  std::vector<std::string> candidates = {hierarchy};
  for (absl::string_view name : absl::StrSplit(hierarchy, ',')) {
    candidates.emplace_back(name);
  }
  for (std::string& name : candidates) {
    if (absl::StartsWith(name, "name=")) name = name.substr(5);
    if (!name.empty() && IsDir(absl::StrCat(root, "/", name))) return absl::StrCat(root, "/", name);
  }
  return "";
}

// Whether a cgroup of the hierarchy at `dir` has the interface file `name`: the root, ours, or
// a first-level child. Root cgroups lack many (memory.swap.max, io.weight, blkio.bfq.weight).
bool FileInHierarchy(const std::string& dir, const std::string& self, const std::string& name) {
  if (Exists(absl::StrCat(dir, "/", name)) || Exists(absl::StrCat(dir, self, "/", name))) {
    return true;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec) && Exists(absl::StrCat(entry.path().string(), "/", name))) {
      return true;
    }
  }
  return false;
}

// "hugepages-2048kB" -> "2MB", the way kubelet (runc's HugePageSizes) names them.
std::vector<std::string> HugepageSizes(const std::string& dir) {
  std::vector<uint64_t> kbs;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string filename = entry.path().filename().string();
    absl::string_view name = filename;
    uint64_t kb = 0;
    if (absl::ConsumePrefix(&name, "hugepages-") && absl::ConsumeSuffix(&name, "kB") &&
        absl::SimpleAtoi(name, &kb) && kb > 0) {
      kbs.push_back(kb);
    }
  }
  std::sort(kbs.begin(), kbs.end());
  std::vector<std::string> sizes;
  for (uint64_t kb : kbs) {
    if (kb >= (1u << 20)) {
      sizes.push_back(absl::StrCat(kb >> 20, "GB"));
    } else if (kb >= (1u << 10)) {
      sizes.push_back(absl::StrCat(kb >> 10, "MB"));
    } else {
      sizes.push_back(absl::StrCat(kb, "KB"));
    }
  }
  return sizes;
}

void ProbeV1(const SelfCgroup& self, CgroupSupport* s) {
  std::map<std::string, std::pair<std::string, std::string>> where;  // controller -> dir, path
  for (const auto& [hierarchy, path] : self.v1) {
    const std::string dir = V1MountDir(s->root, hierarchy);
    if (dir.empty()) continue;
    for (absl::string_view name : absl::StrSplit(hierarchy, ',')) {
      s->v1_controllers.emplace(name);
      where[std::string(name)] = {dir, path};
    }
  }
  auto has_file = [&](const std::string& controller, const std::string& file) {
    auto it = where.find(controller);
    return it != where.end() && FileInHierarchy(it->second.first, it->second.second, file);
  };
  s->swap = has_file("memory", "memory.memsw.limit_in_bytes");
  s->cpu_rt = has_file("cpu", "cpu.rt_runtime_us");
  // runc writes blkio.weight (CFQ) or blkio.bfq.weight (BFQ); with neither scheduler, nothing.
  s->io_weight = has_file("blkio", "blkio.weight") || has_file("blkio", "blkio.bfq.weight");
}

void ProbeV2(const SelfCgroup& self, CgroupSupport* s) {
  s->v2_controllers = ReadWords(s->root + "/cgroup.controllers");
  // As kubelet checks it: the root has no memory.swap.max even with swap accounting.
  s->swap = s->Has("memory") && FileInHierarchy(s->root, self.v2, "memory.swap.max");
  s->io_weight = s->Has("io") && (FileInHierarchy(s->root, self.v2, "io.weight") ||
                                  FileInHierarchy(s->root, self.v2, "io.bfq.weight"));
}

bool HasProcesses(const std::string& dir) {
  std::ifstream in(dir + "/cgroup.procs");
  std::string pid;
  return static_cast<bool>(in >> pid);
}

// The cgroup.procs of berthd's own cgroup in one hierarchy ("" if none can be written): the
// unified one, or a v1 hierarchy's (the rwsem is one for every hierarchy).
std::string OwnCgroupProcs() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  std::vector<std::string> candidates;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (f[1].empty()) {
      candidates.push_back(absl::StrCat("/sys/fs/cgroup", f[2], "/cgroup.procs"));
      candidates.push_back(absl::StrCat("/sys/fs/cgroup/unified", f[2], "/cgroup.procs"));
    } else if (absl::StartsWith(f[1], "name=")) {
      candidates.push_back(absl::StrCat("/sys/fs/cgroup/", f[1].substr(5), f[2], "/cgroup.procs"));
    } else {
      candidates.push_back(absl::StrCat("/sys/fs/cgroup/", f[1], f[2], "/cgroup.procs"));
    }
  }
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), W_OK) == 0) return c;
  }
  return "";
}

class AttachWarmer {
 public:
  // How long after the last call the lock is kept warm: one pod's RunPodSandbox, CreateContainer
  // and StartContainer come well within it.
  static constexpr std::chrono::milliseconds kHold{1000};
  // Below the shortest grace period seen here (about 7 ms; 15-25 ms is usual): the kernel keeps
  // the lock warm for one grace period after the last writer, so a write at least this often
  // means no attach waits.
  static constexpr std::chrono::milliseconds kInterval{4};

  AttachWarmer() : procs_(OwnCgroupProcs()) {
    if (!procs_.empty()) thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
  }
  ~AttachWarmer() {
    if (!thread_.joinable()) return;
    thread_.request_stop();  // wakes the condition variable's waits, which take the token
    thread_.join();
  }
  void Kick() {
    if (procs_.empty()) return;
    std::lock_guard lock(mu_);
    until_ = std::max(until_, std::chrono::steady_clock::now() + kHold);
    cv_.notify_one();
  }

 private:
  void Run(std::stop_token stop) {
    ::pthread_setname_np(::pthread_self(), kCgroupWarmThreadName);
    const std::string pid = std::to_string(::getpid());
    std::unique_lock lock(mu_);
    while (!stop.stop_requested()) {
      // Idle (no wake-ups) until a call; then a write every kInterval until kHold after the last.
      if (!cv_.wait(lock, stop, [&] { return std::chrono::steady_clock::now() < until_; })) {
        return;
      }
      lock.unlock();
      // The process's own cgroup: the kernel takes the lock (the first write waits out the
      // grace period) and finds nothing to move. Failures only mean no head start.
      const int fd = ::open(procs_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        (void)!::write(fd, pid.data(), pid.size());
        ::close(fd);
      }
      lock.lock();
      cv_.wait_for(lock, stop, kInterval, [] { return false; });
    }
  }

  const std::string procs_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::chrono::steady_clock::time_point until_;
  std::jthread thread_;
};

}  // namespace

void WarmCgroupAttach() {
  static AttachWarmer warmer;
  warmer.Kick();
}

bool CgroupSupport::Has(const std::string& controller) const {
  return v2() ? v2_controllers.contains(controller) : v1_controllers.contains(controller);
}

std::string CgroupSupport::Describe() const {
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  std::string layout;
  switch (mode) {
    case CgroupMode::kV1:
      layout = absl::StrCat("v1 (", absl::StrJoin(v1_controllers, " "), ")");
      break;
    case CgroupMode::kHybrid:
      layout = absl::StrCat("hybrid (v1: ", absl::StrJoin(v1_controllers, " "),
                            "; unified, unused by runc: ", absl::StrJoin(v2_controllers, " "), ")");
      break;
    case CgroupMode::kV2:
      layout = absl::StrCat("v2 (", absl::StrJoin(v2_controllers, " "), ")");
      break;
  }
  return absl::StrCat(
      layout, ", swap accounting: ", yes(swap),
      ", huge pages: ", hugepage_sizes.empty() ? "none" : absl::StrJoin(hugepage_sizes, " "),
      " (hugetlb: ", yes(Has("hugetlb")), "), rt: ", yes(cpu_rt), ", io weight: ", yes(io_weight));
}

CgroupSupport ProbeCgroupSupport(const CgroupProbePaths& paths) {
  CgroupSupport s;
  s.root = paths.cgroup_root;
  s.hugepage_sizes = HugepageSizes(paths.hugepages);
  const SelfCgroup self = ReadSelfCgroup(paths.self_cgroup);
  // A cgroup2 root has cgroup.controllers; the tmpfs of the v1 and hybrid layouts does not.
  if (Exists(s.root + "/cgroup.controllers")) {
    s.mode = CgroupMode::kV2;
    ProbeV2(self, &s);
    return s;
  }
  if (Exists(s.root + "/unified/cgroup.controllers")) {
    s.mode = CgroupMode::kHybrid;
    s.v2_controllers = ReadWords(s.root + "/unified/cgroup.controllers");
  }
  ProbeV1(self, &s);
  return s;
}

std::string CgroupParentDir(const std::string& cgroup_parent, bool systemd) {
  std::string parent(absl::StripSuffix(cgroup_parent, "/"));
  if (!systemd || !absl::EndsWith(parent, ".slice")) {
    if (!parent.empty() && parent[0] != '/') parent = absl::StrCat("/", parent);
    return parent;
  }
  // systemd nests a slice in the slices its name is prefixed with: a-b.slice is in a.slice.
  absl::string_view name = absl::StripSuffix(parent, ".slice");
  if (name == "-") return "";
  std::string dir, prefix;
  for (absl::string_view part : absl::StrSplit(name, '-')) {
    absl::StrAppend(&prefix, prefix.empty() ? "" : "-", part);
    absl::StrAppend(&dir, "/", prefix, ".slice");
  }
  return dir;
}

CgroupSupport ForCgroupParent(const CgroupSupport& host, const std::string& parent_dir) {
  if (!host.v2()) return host;
  CgroupSupport narrowed = host;
  std::filesystem::path dir = parent_dir.empty() ? "/" : parent_dir;
  for (; dir.has_relative_path(); dir = dir.parent_path()) {
    const std::string abs = host.root + dir.string();
    if (!Exists(abs + "/cgroup.controllers")) continue;
    // runc enables every controller it can from here down; it cannot enable more in a cgroup
    // that has processes of its own (the "no internal processes" rule).
    narrowed.v2_controllers =
        ReadWords(abs + (HasProcesses(abs) ? "/cgroup.subtree_control" : "/cgroup.controllers"));
    break;
  }
  return narrowed;
}

}  // namespace berth::pod
