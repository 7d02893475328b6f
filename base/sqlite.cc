#include "base/sqlite.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/observer.h"

namespace berth {
namespace {

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = absl::InternalError(
        absl::StrCat("open database ", path, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return status;
  }
  ::chmod(path.c_str(), 0600);
  std::unique_ptr<SqliteDb> out(new SqliteDb(db, path));
  sqlite3_busy_timeout(db, 5000);
  // WAL + synchronous=FULL: a committed change survives a crash of berthd and of the node.
  absl::Status status =
      out->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("open database ", path, ": ", status.message()));
  }
  return out;
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

absl::Status SqliteDb::Exec(absl::string_view sql) {
  char* error = nullptr;
  const std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status status =
        absl::InternalError(absl::StrCat("database ", path_, ": ", error ? error : "error"));
    sqlite3_free(error);
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<SqliteStatement> SqliteDb::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return SqliteError(db_, absl::StrCat("database ", path_, ": prepare"));
  }
  return SqliteStatement(stmt, this);
}

void SqliteDb::Rollback() { (void)Exec("ROLLBACK"); }

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), db_(other.db_) {}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement& SqliteStatement::Bind(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

absl::StatusOr<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_->raw(), absl::StrCat("database ", db_->path()));
}

absl::Status SqliteStatement::Run() {
  absl::StatusOr<bool> row = Step();
  while (row.ok() && *row) row = Step();
  return row.status();
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string SqliteStatement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  return text == nullptr ? std::string()
                         : std::string(reinterpret_cast<const char*>(text),
                                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

int64_t SqliteStatement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

absl::StatusOr<std::vector<std::string>> SqliteDb::LoadTexts(absl::string_view schema,
                                                             absl::string_view select) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Exec(schema); !s.ok()) return s;
  absl::StatusOr<SqliteStatement> rows = Prepare(select);
  if (!rows.ok()) return rows.status();
  std::vector<std::string> out;
  for (;;) {
    absl::StatusOr<bool> row = rows->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(rows->Text(0));
  }
  return out;
}

namespace {
constinit ProcessObserver<TransactionObserver> transaction_observer;
}  // namespace

void SetTransactionObserver(TransactionObserver observer) {
  transaction_observer.Set(std::move(observer));
}

namespace internal {
void ObserveTransaction(std::chrono::steady_clock::time_point began, bool committed) {
  if (std::shared_ptr<const TransactionObserver> observe = transaction_observer.Get()) {
    (*observe)(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count(),
               committed);
  }
}
}  // namespace internal

}  // namespace berth
