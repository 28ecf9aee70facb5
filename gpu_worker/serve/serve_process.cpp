#include "gpu_worker/serve/serve_process.h"

#include <pthread.h>

#include <cstdio>
#include <ctime>
#include <fstream>

#include "common/error.h"

namespace ra::serve {

void add_server_flags(CLI::App& app, ServeOptions& o, std::string& port_file) {
  app.add_option("--host", o.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "Port to listen on; 0 picks a free one")->capture_default_str();
  app.add_option("--port-file", port_file, "Write the port here once listening");
  app.add_option("--queue", o.queue_capacity, "Requests that may wait behind the running one (then 429)")
      ->capture_default_str();
  app.add_option("--http-threads", o.http_threads, "HTTP threads (0: queue + 8)")->capture_default_str();
  app.add_option("--max-contexts", o.max_contexts, "Prebuilt contexts kept at once")->capture_default_str();
  app.add_option("--default-max-tokens", o.default_max_tokens, "max_tokens of a completion that gives none")
      ->capture_default_str();
  app.add_option("--request-timeout", o.request_timeout_seconds, "Seconds a request may take in all")
      ->capture_default_str();
  app.add_flag("--quiet", [&o](int64_t) { o.log_requests = false; }, "No per-request log lines");
}

void write_port_file(const std::string& path, int port) {
  if (path.empty()) return;
  {
    std::ofstream out(path + ".tmp");
    out << port << "\n";
    out.close();
    RA_REQUIRE(out.good(), "--port-file {}: cannot write {}.tmp", path, path);
  }
  RA_REQUIRE(std::rename((path + ".tmp").c_str(), path.c_str()) == 0, "--port-file {}: cannot rename {}.tmp to it",
             path, path);
}

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int wait_for_stop_signal(const sigset_t& signals) {
  const timespec second{1, 0};
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &second);
    if (sig > 0) return sig;
  }
}

}  // namespace ra::serve
