#include "image/auth.h"

#include <stdlib.h>
#include <unistd.h>

#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/registry.h"

namespace berth::image {
namespace {

using ::testing::HasSubstr;

TEST(WwwAuthenticateTest, ParsesBearerAndBasic) {
  std::vector<AuthChallenge> c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params["realm"], "https://auth.example/token");
  EXPECT_EQ(c[0].params["service"], "registry.example");
  EXPECT_EQ(c[0].params["scope"], "repository:a/b:pull,push");

  c = ParseWwwAuthenticate(R"(Basic realm="berth test", Bearer realm="x\"y",error=invalid_token)");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "berth test");
  EXPECT_EQ(c[1].params["realm"], "x\"y");
  EXPECT_EQ(c[1].params["error"], "invalid_token");
  EXPECT_TRUE(ParseWwwAuthenticate("").empty());
}

TEST(CredentialsTest, FromAuthConfig) {
  absl::StatusOr<Credentials> c = CredentialsFromAuthConfig("u", "p", "", "", "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "u");
  // base64("alice:pa:ss") wins over username/password.
  c = CredentialsFromAuthConfig("u", "p", "YWxpY2U6cGE6c3M=", "", "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "pa:ss");
  c = CredentialsFromAuthConfig("", "", "", "refresh", "bearer");
  EXPECT_EQ(c->identity_token, "refresh");
  EXPECT_EQ(c->registry_token, "bearer");
  EXPECT_EQ(CredentialsFromAuthConfig("", "", "!!notbase64", "", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CredentialsFromAuthConfig("", "", "bm9jb2xvbg==", "", "").status().code(),
            absl::StatusCode::kInvalidArgument);  // "nocolon"
}

TEST(CredentialsTest, FingerprintsTellCallersApartWithoutHoldingSecrets) {
  const Credentials alice{.username = "alice", .password = "pw"};
  EXPECT_EQ(CredentialsFingerprint({}), "anonymous");
  EXPECT_EQ(CredentialsFingerprint(alice), CredentialsFingerprint(alice));
  EXPECT_NE(CredentialsFingerprint(alice), CredentialsFingerprint({.username = "alice"}));
  // Field boundaries count: "ab"+"c" is not "a"+"bc".
  EXPECT_NE(CredentialsFingerprint({.username = "ab", .password = "c"}),
            CredentialsFingerprint({.username = "a", .password = "bc"}));
  EXPECT_EQ(CredentialsFingerprint(alice).find("pw"), std::string::npos);
}

TEST(CredentialsTest, OnlyOverTlsToATokenService) {
  const Credentials alice{.username = "alice", .password = "pw"};
  EXPECT_TRUE(MaySendCredentials("https://auth.example/token", false, alice).ok());
  EXPECT_TRUE(MaySendCredentials("HTTPS://auth.example/token", false, alice).ok());
  absl::Status plain = MaySendCredentials("http://auth.example/token", false, alice);
  EXPECT_EQ(plain.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(plain.message(), ::testing::HasSubstr("not HTTPS"));
  // Anonymous tokens may come over plain HTTP; an insecure registry has no TLS to keep them in.
  EXPECT_TRUE(MaySendCredentials("http://auth.example/token", false, {}).ok());
  EXPECT_TRUE(MaySendCredentials("http://auth.example/token", true, alice).ok());
}

class AuthFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-auth-test.XXXXXX";
    int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = tmpl;
  }
  void TearDown() override { ::unlink(path_.c_str()); }
  Credentials Lookup(const std::string& ref) {
    absl::StatusOr<Credentials> c = CredentialsFromAuthFile(path_, *ParseReference(ref));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Credentials{};
  }
  std::string path_;
};

TEST_F(AuthFileTest, MostSpecificEntryWins) {
  ASSERT_TRUE(WriteFileAtomic(path_, R"({"auths": {
    "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
    "quay.io": {"username": "q", "password": "qp"},
    "quay.io/team": {"auth": "dGVhbTp0cA=="},
    "127.0.0.1:5000": {"identitytoken": "tok"}}})")
                  .ok());
  EXPECT_EQ(Lookup("busybox").username, "hub");
  EXPECT_EQ(Lookup("busybox").password, "hubpw");
  EXPECT_EQ(Lookup("quay.io/other/x").username, "q");
  EXPECT_EQ(Lookup("quay.io/team/x").username, "team");
  EXPECT_EQ(Lookup("quay.io/teamster/x").username, "q");
  EXPECT_EQ(Lookup("127.0.0.1:5000/x").identity_token, "tok");
  EXPECT_TRUE(Lookup("gcr.io/x").empty());
}

TEST_F(AuthFileTest, Errors) {
  ASSERT_TRUE(WriteFileAtomic(path_, "{broken").ok());
  absl::StatusOr<Credentials> c = CredentialsFromAuthFile(path_, *ParseReference("busybox"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().ToString(), HasSubstr(path_));
  ASSERT_TRUE(WriteFileAtomic(path_, R"({"auths": {"docker.io": {"auth": "bm9jb2xvbg=="}}})").ok());
  c = CredentialsFromAuthFile(path_, *ParseReference("busybox"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CredentialsFromAuthFile("/nonexistent/auth.json", *ParseReference("busybox"))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace berth::image
