#pragma once
// Open MPI hostfiles (--hostfile): the hosts a multi-node plan may place ranks on, and their slots.

#include <string>
#include <vector>

namespace ra {

// One line of an Open MPI hostfile.
struct HostSlots {
  std::string host;
  int slots = 1;

  bool operator==(const HostSlots&) const = default;
};

// Reads an Open MPI hostfile: "host [slots=N] [max_slots=M]" per line, '#' comments, blank lines; a
// host listed twice adds up its slots. Errors name file:line.
std::vector<HostSlots> read_hostfile(const std::string& path);

}  // namespace ra
