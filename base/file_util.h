#pragma once

#include <sys/types.h>

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth {

// Reads a whole file. NotFound if it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Whether a written file must survive a power loss (kSynced: fsync of the file and of its
// directory) or only the death of a process (kVolatile: what a reboot makes useless anyway, such as
// a bundle's config.json, a pod's /etc files or an exec's process spec; the page cache keeps it).
enum class Durability { kSynced, kVolatile };

// Writes a file atomically: a temporary file in the same directory, rename (fsync'd first and after
// unless kVolatile). On failure the target is unchanged and no temporary file is left.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view content, mode_t mode = 0644,
                             Durability durability = Durability::kSynced);

// Removes from `dir` the temporary files of WriteFileAtomic calls that the death of their process
// cut short ("<name>.tmp.<pid>", of a pid other than this process's), for a directory whose files
// outlive the process that writes them. Returns the paths it removed.
std::vector<std::string> RemoveInterruptedWrites(const std::string& dir);

// mkdir -p with the given mode for the directories it creates.
absl::Status MakeDirs(const std::string& path, mode_t mode = 0755);

// The directory part of a path ("/a/b" -> "/a", "b" -> ".").
std::string DirName(absl::string_view path);

// Creates a fresh private directory <parent>/<prefix>XXXXXX (and parent if missing).
absl::StatusOr<std::string> MakeTempDirIn(const std::string& parent, absl::string_view prefix);

}  // namespace berth
