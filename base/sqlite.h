#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth {

class SqliteStatement;

// One SQLite database connection (WAL journal, foreign keys on, a busy timeout). Every metadata
// change of berthd is one transaction on it. Not thread-safe: callers serialise access (the stores
// hold a mutex around each transaction).
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

  sqlite3* raw() { return db_; }
  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
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

// Rolls back on destruction unless committed: one per multi-statement change.
class SqliteTransaction {
 public:
  // Begins; check ok() before use.
  explicit SqliteTransaction(SqliteDb& db) : db_(db), status_(db.Begin()) {}
  ~SqliteTransaction() {
    if (status_.ok() && !committed_) db_.Rollback();
  }
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;

  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    absl::Status s = db_.Commit();
    committed_ = s.ok();
    return s;
  }

 private:
  SqliteDb& db_;
  absl::Status status_;
  bool committed_ = false;
};

}  // namespace berth
