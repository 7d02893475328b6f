#include "image/digest.h"

#include <fcntl.h>
// SHA256_Init and friends are deprecated in OpenSSL 3 in favour of EVP, but EVP's first use loads
// the library's configuration and its default provider: 2 MiB of berthd's RSS for one hash. The
// low-level functions run the same assembly and set up nothing.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace berth::image {

bool IsValidDigest(absl::string_view digest) {
  constexpr absl::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || digest.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  for (char c : digest.substr(kPrefix.size())) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

absl::string_view DigestHex(absl::string_view digest) {
  const size_t colon = digest.find(':');
  return colon == absl::string_view::npos ? digest : digest.substr(colon + 1);
}

struct Sha256::Ctx {
  SHA256_CTX sha;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) { SHA256_Init(&ctx_->sha); }

Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t size) { SHA256_Update(&ctx_->sha, data, size); }

std::string Sha256::Finish() {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256_Final(out, &ctx_->sha);
  return absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(
                                     reinterpret_cast<char*>(out), sizeof(out))));
}

std::string DigestOf(absl::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.Finish();
}

absl::StatusOr<std::string> DigestOfFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  Sha256 sha;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    sha.Update(buf, static_cast<size_t>(n));
  }
  return sha.Finish();
}

}  // namespace berth::image
