#pragma once
// Tells a route whether its client has gone away while the request waits or decodes (so the request is
// cancelled within one token). cpp-httplib 0.11 gives a handler no socket, and a content provider's
// DataSink::is_writable() covers streamed responses only once their headers are out. So the socket is
// found once: the connection's addresses (local and peer address and port, from the request) name
// its inode in /proc/self/net/tcp (tcp6), and the descriptor that links to that inode is ours. Only
// path lookups touch what other threads own. Then it is polled without waiting: a FIN or RST from the
// peer reads as closed. Linux only. The socket stays open while the handler runs (httplib closes it
// afterwards, on this thread), so the descriptor cannot be reused under us.

#include <httplib.h>

namespace ra::serve {

class ConnectionWatch {
 public:
  explicit ConnectionWatch(const httplib::Request& request);
  // True once the peer has closed or reset the connection. False when the socket was not found.
  bool closed() const;
  bool watching() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace ra::serve
