#pragma once
// The HTTP server's knobs, with their defaults (the flags of serve_process.h set them: ra-serve-inproc's
// and `ra serve`'s).

#include <cstddef>
#include <cstdint>
#include <string>

namespace ra::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (Server::start returns it)
  size_t queue_capacity = 8;       // requests that may wait behind the running one; the next gets 429
  int http_threads = 0;            // 0: queue_capacity + 8 (a waiting request holds one thread)
  size_t max_contexts = 8;         // prebuilt contexts kept at once
  int64_t default_max_tokens = 16; // /v1/completions without max_tokens (OpenAI's default); chat: no limit
  double request_timeout_seconds = 600.0;  // admitted -> end; then 504 and the request is cancelled
  int keep_alive_seconds = 5;      // an idle keep-alive connection is closed after this
  size_t max_body_bytes = size_t{64} << 20;
  bool log_requests = true;        // one line per request on stderr
};

}  // namespace ra::serve
