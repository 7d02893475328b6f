#include "pod/record_store.h"

#include <stdlib.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Records(const absl::StatusOr<std::vector<RecordStore::Intent>>& intents) {
  std::vector<std::string> out;
  for (const RecordStore::Intent& intent : *intents) out.push_back(intent.record);
  return out;
}

class RecordStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-records-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    db_.reset();
    auto db = SqliteDb::Open(dir_ + "/berth.db");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
  }

  std::string dir_;
  std::unique_ptr<SqliteDb> db_;
};

TEST_F(RecordStoreTest, AnIntentOutlivesTheProcessUntilItsRecordIsPut) {
  {
    RecordStore store(db_.get(), "containers", "sandbox_id");
    ASSERT_TRUE(store.Load().ok());
    ASSERT_TRUE(store.Intend("c1", R"({"id":"c1"})").ok());
    ASSERT_TRUE(store.Intend("c2", R"({"id":"c2"})").ok());
    ASSERT_TRUE(store.Put("c2", "name2", "s1", R"({"id":"c2","state":1})").ok());
  }
  Reopen();
  RecordStore store(db_.get(), "containers", "sandbox_id");
  EXPECT_THAT(*store.Load(), ElementsAre(R"({"id":"c2","state":1})"));
  EXPECT_THAT(Records(store.LoadIntents()), ElementsAre(R"({"id":"c1"})"));
  // The other kind's intents are not this one's.
  RecordStore sandboxes(db_.get(), "sandboxes");
  ASSERT_TRUE(sandboxes.Load().ok());
  EXPECT_THAT(Records(sandboxes.LoadIntents()), IsEmpty());
  ASSERT_TRUE(store.DropIntent("c1").ok());
  EXPECT_THAT(Records(store.LoadIntents()), IsEmpty());
}

TEST_F(RecordStoreTest, PutUpdatesTheRecordAndKeepsNamesUnique) {
  RecordStore store(db_.get(), "sandboxes");
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Put("s1", "pod", "", "v1").ok());
  ASSERT_TRUE(store.Put("s1", "pod", "", "v2").ok());
  EXPECT_THAT(*store.Load(), ElementsAre("v2"));
  EXPECT_FALSE(store.Put("s2", "pod", "", "other").ok());
  ASSERT_TRUE(store.Delete("s1").ok());
  EXPECT_THAT(*store.Load(), IsEmpty());
  EXPECT_TRUE(store.Put("s2", "pod", "", "other").ok());
}

}  // namespace
}  // namespace berth::pod
