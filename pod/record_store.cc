#include "pod/record_store.h"

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/logging.h"
#include "base/status_macros.h"

namespace berth::pod {
namespace {

constexpr char kIntentsSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS intents(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  record TEXT NOT NULL);
)sql";

}  // namespace

RecordStore::RecordStore(SqliteDb* db, std::string table, std::string parent_column)
    : db_(db), table_(std::move(table)), parent_column_(std::move(parent_column)) {}

absl::StatusOr<std::vector<std::string>> RecordStore::Load() {
  const std::string schema = absl::StrCat(
      kIntentsSchema, "CREATE TABLE IF NOT EXISTS ", table_, "(id TEXT PRIMARY KEY, ",
      "name TEXT NOT NULL UNIQUE, ",
      parent_column_.empty() ? "" : absl::StrCat(parent_column_, " TEXT NOT NULL, "),
      "record TEXT NOT NULL);");
  return db_->LoadTexts(schema, absl::StrCat("SELECT record FROM ", table_));
}

absl::StatusOr<std::vector<RecordStore::Intent>> RecordStore::LoadIntents() {
  absl::MutexLock lock(&db_->mu());
  RETURN_IF_ERROR(db_->Exec(kIntentsSchema));
  ASSIGN_OR_RETURN(SqliteStatement rows,
                   db_->Prepare("SELECT id, record FROM intents WHERE kind = ? ORDER BY rowid"));
  rows.Bind(1, table_);
  std::vector<Intent> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, rows.Step());
    if (!row) break;
    out.push_back({rows.Text(0), rows.Text(1)});
  }
  return out;
}

absl::Status RecordStore::Intend(const std::string& id, const std::string& record) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement insert,
                   db_->Prepare("INSERT OR REPLACE INTO intents(id, kind, record) VALUES(?,?,?)"));
  return Annotate(insert.Bind(1, id).Bind(2, table_).Bind(3, record).Run(),
                  absl::StrCat("record the intent of ", id));
}

absl::Status RecordStore::DropIntent(const std::string& id) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement del, db_->Prepare("DELETE FROM intents WHERE id = ?"));
  return Annotate(del.Bind(1, id).Run(), absl::StrCat("drop the intent of ", id));
}

void RecordStore::EndIntent(const std::string& id, const absl::Status& undone) {
  if (!undone.ok()) {
    spdlog::error("{} {}: undoing a create failed, tried again at the next start: {}", table_, id,
                  undone.message());
  } else if (absl::Status dropped = DropIntent(id); !dropped.ok()) {
    spdlog::error("{} {}: {}", table_, id, dropped.message());
  }
}

int RecordStore::UndoIntents(const std::function<absl::Status(const std::string& record)>& undo) {
  absl::StatusOr<std::vector<Intent>> intents = LoadIntents();
  if (!intents.ok()) {
    spdlog::error("{}: read intents: {}", table_, intents.status().message());
    return 0;
  }
  int undone = 0;
  for (const Intent& intent : *intents) {
    absl::Status status = undo(intent.record);
    EndIntent(intent.id, status);
    if (status.ok()) {
      spdlog::info("{} {}: undid a create that berthd did not finish", table_, intent.id);
      ++undone;
    }
  }
  return undone;
}

absl::Status RecordStore::Put(const std::string& id, const std::string& name,
                              const std::string& parent, const std::string& record) {
  SqliteTransaction tx(*db_);
  RETURN_IF_ERROR(tx.status());
  const std::string sql =
      parent_column_.empty()
          ? absl::StrCat("INSERT INTO ", table_, "(id, name, record) VALUES(?1,?2,?4) ",
                         "ON CONFLICT(id) DO UPDATE SET record=excluded.record")
          : absl::StrCat("INSERT INTO ", table_, "(id, name, ", parent_column_,
                         ", record) VALUES(?1,?2,?3,?4) ",
                         "ON CONFLICT(id) DO UPDATE SET record=excluded.record");
  ASSIGN_OR_RETURN(SqliteStatement upsert, db_->Prepare(sql));
  upsert.Bind(1, id).Bind(2, name).Bind(4, record);
  if (!parent_column_.empty()) upsert.Bind(3, parent);
  RETURN_IF_ERROR(Annotate(upsert.Run(), absl::StrCat("persist ", id)));
  ASSIGN_OR_RETURN(SqliteStatement drop, db_->Prepare("DELETE FROM intents WHERE id = ?"));
  RETURN_IF_ERROR(Annotate(drop.Bind(1, id).Run(), absl::StrCat("persist ", id)));
  return Annotate(tx.Commit(), absl::StrCat("persist ", id));
}

absl::Status RecordStore::Delete(const std::string& id) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement del,
                   db_->Prepare(absl::StrCat("DELETE FROM ", table_, " WHERE id = ?")));
  return Annotate(del.Bind(1, id).Run(), absl::StrCat("forget ", id));
}

}  // namespace berth::pod
