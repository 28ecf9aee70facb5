#include "gpu_worker/serve/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace ra::serve {
namespace {

// An address and port as /proc/net/tcp{,6} print them: each 32-bit word of the address in hex as the
// kernel stores it (network-order bytes read as a native integer), ':', the port in hex.
bool proc_net_form(const std::string& address, int port, bool& v6, std::string& out) {
  unsigned char bytes[16];
  size_t words;
  if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
    v6 = false;
    words = 1;
  } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
    v6 = true;
    words = 4;
  } else {
    return false;
  }
  out.clear();
  for (size_t w = 0; w < words; ++w) {
    uint32_t word;
    std::memcpy(&word, bytes + 4 * w, 4);
    out += fmt::format("{:08X}", word);
  }
  out += fmt::format(":{:04X}", port);
  return true;
}

// The inode of the socket whose local and remote addresses are these, from /proc/self/net/tcp{,6}.
unsigned long find_inode(const httplib::Request& r) {
  bool v6 = false, peer_v6 = false;
  std::string local, remote;
  if (!proc_net_form(r.local_addr, r.local_port, v6, local) ||
      !proc_net_form(r.remote_addr, r.remote_port, peer_v6, remote) || v6 != peer_v6) {
    return 0;
  }
  std::ifstream table(v6 ? "/proc/self/net/tcp6" : "/proc/self/net/tcp");
  std::string line, slot, loc, rem, state, queues, timer, retransmits, uid, timeout;
  unsigned long inode = 0;
  std::getline(table, line);  // the header
  while (table >> slot >> loc >> rem >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode) {
    if (loc == local && rem == remote && inode != 0) return inode;
    std::getline(table, line);  // the rest of the row
  }
  return 0;
}

// The descriptor of this process that links to socket `inode` (readlink only: no other thread's
// descriptor is used).
int find_fd(unsigned long inode) {
  const std::string want = fmt::format("socket:[{}]", inode);
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  char target[64];
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(path.c_str(), target, sizeof(target));
    if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == want) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

}  // namespace

ConnectionWatch::ConnectionWatch(const httplib::Request& request) {
  if (request.remote_port <= 0 || request.local_port <= 0) return;
  if (const unsigned long inode = find_inode(request)) fd_ = find_fd(inode);
}

bool ConnectionWatch::closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char c;
  return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;  // readable with nothing to read: the peer closed
}

}  // namespace ra::serve
