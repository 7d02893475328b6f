#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/string_view.h"

namespace berth {

class SqliteStatement;

// One SQLite database connection (WAL journal, foreign keys on, a busy timeout), shared by every
// store of berthd. Every metadata change is one transaction on it. The connection is in SQLite's
// serialized mode, so any thread may use it; mu() keeps the writes of different stores from
// interleaving: SqliteTransaction holds it, and a one-statement write takes it itself.
class SqliteDb {
 public:
  // Opens or creates the database at `path` (mode 0600). Internal with the path on failure.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements without results (schema, pragmas).
  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<SqliteStatement> Prepare(absl::string_view sql);

  // BEGIN IMMEDIATE / COMMIT / ROLLBACK.
  absl::Status Begin() { return Exec("BEGIN IMMEDIATE"); }
  absl::Status Commit() { return Exec("COMMIT"); }
  void Rollback();

  // Creates the schema (under mu()) and returns the first column of every row of `select`.
  absl::StatusOr<std::vector<std::string>> LoadTexts(absl::string_view schema,
                                                    absl::string_view select);

  absl::Mutex& mu() { return mu_; }
  sqlite3* raw() { return db_; }
  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  absl::Mutex mu_;
};

// A prepared statement. Bind parameters are 1-based, columns 0-based. Move-only.
class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&&) = delete;
  SqliteStatement(const SqliteStatement&) = delete;
  ~SqliteStatement();

  SqliteStatement& Bind(int index, absl::string_view text);
  SqliteStatement& Bind(int index, int64_t value);
  // Next row: true if there is one, false when done; Internal on error.
  absl::StatusOr<bool> Step();
  // Runs a statement without results to completion.
  absl::Status Run();
  void Reset();

  std::string Text(int column) const;
  int64_t Int(int column) const;

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3_stmt* stmt, SqliteDb* db) : stmt_(stmt), db_(db) {}
  sqlite3_stmt* stmt_;
  SqliteDb* db_;
};

// Told how long each SqliteTransaction took, from BEGIN to its COMMIT or rollback (berthd's
// berth_db_transaction_duration_seconds). Process-wide; an empty one removes it. Thread-safe.
using TransactionObserver = std::function<void(double seconds, bool committed)>;
void SetTransactionObserver(TransactionObserver observer);

namespace internal {
void ObserveTransaction(std::chrono::steady_clock::time_point began, bool committed);
}  // namespace internal

// Rolls back on destruction unless committed: one per multi-statement change.
class SqliteTransaction {
 public:
  // Begins; check ok() before use.
  // Holds db.mu() until it is destroyed.
  explicit SqliteTransaction(SqliteDb& db) : lock_(&db.mu()), db_(db), status_(db.Begin()) {}
  ~SqliteTransaction() {
    if (status_.ok() && !committed_) {
      db_.Rollback();
      internal::ObserveTransaction(began_, false);
    }
  }
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;

  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    absl::Status s = db_.Commit();
    committed_ = s.ok();
    if (committed_) internal::ObserveTransaction(began_, true);
    return s;
  }

 private:
  absl::MutexLock lock_;
  const std::chrono::steady_clock::time_point began_ = std::chrono::steady_clock::now();
  SqliteDb& db_;
  absl::Status status_;
  bool committed_ = false;
};

}  // namespace berth
