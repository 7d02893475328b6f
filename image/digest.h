#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::image {

// An OCI content digest, "sha256:<64 lowercase hex>". Only sha256 is supported (the registries and
// images kubelet meets use nothing else).
bool IsValidDigest(absl::string_view digest);

// The hex part of a valid digest ("sha256:ab.." -> "ab..").
absl::string_view DigestHex(absl::string_view digest);

// Incremental SHA-256 (OpenSSL EVP). Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // "sha256:<hex>" of everything passed to Update. Call once.
  std::string Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// "sha256:<hex>" of a string.
std::string DigestOf(absl::string_view data);

// "sha256:<hex>" of a file's content. NotFound / Internal with the path on failure.
absl::StatusOr<std::string> DigestOfFile(const std::string& path);

}  // namespace berth::image
