#include "launcher/plan/hostfile.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace ra {

std::vector<HostSlots> read_hostfile(const std::string& path) {
  std::ifstream in(path);
  RA_REQUIRE(in.good(), "hostfile {}: cannot open", path);
  std::vector<HostSlots> hosts;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string host, word;
    if (!(words >> host)) continue;
    RA_REQUIRE(host.find('=') == std::string::npos, "{}:{}: expected a host name first (got '{}')", path, line_no,
               host);
    int slots = 1;
    while (words >> word) {
      const size_t eq = word.find('=');
      const std::string key = word.substr(0, eq);
      RA_REQUIRE(eq != std::string::npos && (key == "slots" || key == "max_slots" || key == "max-slots"),
                 "{}:{}: unknown hostfile option '{}' (expected slots=N or max_slots=N)", path, line_no, word);
      int value = 0;
      std::istringstream number(word.substr(eq + 1));
      RA_REQUIRE((number >> value) && number.eof() && value >= 1, "{}:{}: {} must be a positive integer (got '{}')",
                 path, line_no, key, word.substr(eq + 1));
      if (key == "slots") slots = value;
    }
    auto it = std::find_if(hosts.begin(), hosts.end(), [&](const HostSlots& h) { return h.host == host; });
    if (it == hosts.end()) hosts.push_back({host, slots});
    else it->slots += slots;
  }
  RA_REQUIRE(!hosts.empty(), "hostfile {}: no hosts listed", path);
  return hosts;
}

}  // namespace ra
