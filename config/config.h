#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace berth::config {

// The effective configuration of berthd. Defaults are the values a fresh node runs with; every
// field has the YAML key of the same name (see contrib/berth.yaml). Plain data, copyable.

struct RuntimeHandler {
  std::string path;  // OCI runtime binary, absolute
  std::string root;  // the runtime's --root state directory, absolute
  // Prefixes of pod and container annotations passed on to this runtime's OCI specs (as
  // containerd's pod_annotations and cri-o's allowed_annotations). Runtimes act on annotations
  // (systemd unit properties, crun's run.oci.*): by default none from a request reaches the spec.
  std::vector<std::string> allowed_annotations;
  bool operator==(const RuntimeHandler&) const = default;
};

struct MonitorConfig {
  std::string path;           // "" = our berth-conmon next to berthd; else e.g. /usr/bin/conmon
  int64_t log_size_max = -1;  // bytes per container log file before rotation; -1 = unlimited
  // Bytes of output an ExecSync keeps, both streams together: the rest is read and dropped (a
  // probe that prints forever cannot fill berthd's memory). Also the bound of the conmon
  // protocol's exec mode (Monitor::Exec), where the monitor stops recording there.
  int64_t exec_sync_output_max = 16 << 20;
  // "pod": one berth-conmon keeps all of a pod's containers; "container": one monitor per
  // container, conmon's way (the only one upstream conmon has); "auto": pod with berth-conmon
  // (path ""), container with another monitor.
  std::string mode = "auto";
  // How ExecSync starts its process: "berth" joins the container's namespaces and cgroups itself
  // (berth-exec, a few ms); "runtime" runs the OCI runtime's exec, as cri-o and containerd do.
  std::string exec_sync = "berth";
  bool per_pod() const { return mode == "pod" || (mode == "auto" && path.empty()); }
  bool operator==(const MonitorConfig&) const = default;
};

struct PauseConfig {
  std::string image;  // "" = the built-in berth-pause
  bool operator==(const PauseConfig&) const = default;
};

struct NetworkConfig {
  std::string conf_dir = "/etc/cni/net.d";
  std::vector<std::string> bin_dirs = {"/usr/lib/cni", "/opt/cni/bin"};
  std::string default_network;  // "" = the first valid config in conf_dir, in lexical order
  bool operator==(const NetworkConfig&) const = default;
};

struct RegistryMirror {
  std::string location;  // host[:port][/path]
  bool insecure = false;
  bool operator==(const RegistryMirror&) const = default;
};

struct RegistryConfig {
  std::string prefix;    // e.g. "registry.k8s.io" or "127.0.0.1:5000"
  std::string location;  // "" = the prefix itself; else rewrites the prefix to this location
  bool insecure = false;  // plain HTTP or unverified TLS
  std::vector<RegistryMirror> mirrors;  // tried in order before the registry itself
  bool operator==(const RegistryConfig&) const = default;
};

struct ImagesConfig {
  std::vector<RegistryConfig> registries;
  std::string auth_file;  // docker config.json / containers auth.json; "" = none
  int parallel_downloads = 4;
  std::vector<std::string> pinned;  // image name patterns never garbage-collected
  // Bounds on what one image may unpack to, against layers built to exhaust the node: bytes of a
  // layer's uncompressed tar stream, their sum over an image, entries in a layer, and path
  // components of an entry (also after following symlinks).
  int64_t max_layer_size = int64_t{64} << 30;
  int64_t max_image_size = int64_t{128} << 30;
  int64_t max_layer_entries = 2'000'000;
  int64_t max_path_depth = 512;
  // A registry transfer with no byte for stall_timeout fails (unretried); a whole pull may take
  // pull_timeout (0 = no limit). A pull whose callers all went away stops either way.
  std::chrono::seconds stall_timeout{30};
  std::chrono::seconds pull_timeout{0};
  bool operator==(const ImagesConfig&) const = default;
};

struct StreamingConfig {
  std::string address = "127.0.0.1";
  int port = 0;  // 0 = any free port
  std::chrono::seconds idle_timeout = std::chrono::hours(4);
  std::string tls_cert;  // both or neither
  std::string tls_key;
  bool operator==(const StreamingConfig&) const = default;
};

struct MetricsConfig {
  bool enabled = true;
  std::string address = "127.0.0.1:9537";  // host:port
  bool operator==(const MetricsConfig&) const = default;
};

struct Config {
  std::string root = "/var/lib/berth";
  std::string run_root = "/run/berth";
  std::string listen = "/run/berth/berth.sock";
  std::string log_level = "info";  // trace|debug|info|warn|error
  std::string log_format = "text";  // text|json (applies at start)
  std::string cgroup_manager = "cgroupfs";  // cgroupfs|systemd
  std::string default_runtime = "runc";
  std::map<std::string, RuntimeHandler> runtimes = {
      {"runc", {"/usr/sbin/runc", "/run/berth/runc"}},
      {"crun", {"/usr/bin/crun", "/run/berth/crun"}},
  };
  MonitorConfig monitor;
  PauseConfig pause;
  NetworkConfig network;
  ImagesConfig images;
  StreamingConfig streaming;
  MetricsConfig metrics;
  bool operator==(const Config&) const = default;
};

}  // namespace berth::config
