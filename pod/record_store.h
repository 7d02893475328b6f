#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/sqlite.h"

namespace berth::pod {

// One kind of record in berth.db (sandboxes or containers: id, unique name, optional parent id,
// the record as JSON) and the intents of that kind: what a create is about to make, recorded
// before it makes anything, so that a berthd killed in the middle knows at its next start what to
// undo. An intent ends in one transaction with the record it became (Put), or alone when the
// create was undone (DropIntent). Thread-safe (writes take the database's lock).
class RecordStore {
 public:
  // `table` is "sandboxes" or "containers"; `parent_column` names the column holding the parent
  // id ("" for none).
  RecordStore(SqliteDb* db, std::string table, std::string parent_column = "");

  // Creates the tables if needed and returns every record.
  absl::StatusOr<std::vector<std::string>> Load();
  struct Intent {
    std::string id;
    std::string record;
  };
  // The intents of this kind left by creates that neither finished nor were undone, oldest first.
  absl::StatusOr<std::vector<Intent>> LoadIntents();

  // Records (or replaces) the intent of create `id`.
  absl::Status Intend(const std::string& id, const std::string& record);
  absl::Status DropIntent(const std::string& id);
  // After `id`'s create was undone (`undone` OK): drops its intent. An undo that failed keeps the
  // intent for the next start to try again; that, and a failure to drop, is logged.
  void EndIntent(const std::string& id, const absl::Status& undone);
  // At start: `undo` each intent left by an earlier berthd (it parses the record and tears down
  // what the create made), then EndIntent. Returns how many were undone.
  int UndoIntents(const std::function<absl::Status(const std::string& record)>& undo);
  // Inserts or updates record `id` (the name and parent are set on insert) and drops its intent.
  absl::Status Put(const std::string& id, const std::string& name, const std::string& parent,
                   const std::string& record);
  absl::Status Delete(const std::string& id);

 private:
  SqliteDb* const db_;
  const std::string table_;
  const std::string parent_column_;
};

}  // namespace berth::pod
