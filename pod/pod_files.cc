#include "pod/pod_files.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "base/status_macros.h"

namespace berth::pod {
namespace {

bool IsIp(const std::string& text) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

bool HasSpace(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return absl::ascii_isspace(c); });
}

}  // namespace

bool IsValidHostname(const std::string& hostname) {
  // What the kernel takes (HOST_NAME_MAX), minus what would break /etc/hosts and /etc/hostname.
  // Like the other runtimes, not the stricter DNS rules: clients send names such as
  // "NamespaceOption-PodSandbox-<uuid>".
  if (hostname.empty() || hostname.size() > 64) return false;
  for (char c : hostname) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

std::string ResolvConf(const DnsSettings& dns) {
  std::string out;
  if (!dns.searches.empty()) absl::StrAppend(&out, "search ", absl::StrJoin(dns.searches, " "), "\n");
  for (const std::string& server : dns.servers) absl::StrAppend(&out, "nameserver ", server, "\n");
  if (!dns.options.empty()) absl::StrAppend(&out, "options ", absl::StrJoin(dns.options, " "), "\n");
  return out;
}

std::string HostsFile(const std::string& hostname, const std::string& ip) {
  std::string out =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\n"
      "fe00::0\tip6-mcastprefix\n"
      "fe00::1\tip6-allnodes\n"
      "fe00::2\tip6-allrouters\n";
  if (!ip.empty() && !hostname.empty()) absl::StrAppend(&out, ip, "\t", hostname, "\n");
  return out;
}

absl::Status WritePodFiles(const std::string& dir, const std::string& hostname,
                           const std::optional<DnsSettings>& dns,
                           const std::string& host_resolv_conf) {
  if (!IsValidHostname(hostname)) {
    return absl::InvalidArgumentError(absl::StrCat("hostname \"", hostname, "\" is not valid"));
  }
  std::string resolv;
  if (dns) {
    for (const std::string& server : dns->servers) {
      if (!IsIp(server)) {
        return absl::InvalidArgumentError(
            absl::StrCat("dns_config.servers: \"", server, "\" is not an IP address"));
      }
    }
    for (const std::string& s : dns->searches) {
      if (s.empty() || HasSpace(s)) {
        return absl::InvalidArgumentError(absl::StrCat("dns_config.searches: \"", s, "\""));
      }
    }
    for (const std::string& o : dns->options) {
      if (o.empty() || HasSpace(o)) {
        return absl::InvalidArgumentError(absl::StrCat("dns_config.options: \"", o, "\""));
      }
    }
    resolv = ResolvConf(*dns);
  } else {
    absl::StatusOr<std::string> host = ReadFile(host_resolv_conf);
    resolv = host.ok() ? *host : std::string();
  }
  RETURN_IF_ERROR(MakeDirs(dir, 0755));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/hostname", hostname + "\n", 0644, Durability::kVolatile));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/resolv.conf", resolv, 0644, Durability::kVolatile));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/hosts", HostsFile(hostname, ""), 0644,
                                  Durability::kVolatile));
  return absl::OkStatus();
}

}  // namespace berth::pod
