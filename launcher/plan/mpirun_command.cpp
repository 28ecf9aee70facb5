#include "launcher/plan/mpirun_command.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <string_view>

namespace ra {

bool running_as_root() { return geteuid() == 0; }

std::vector<std::string> mpirun_prefix(const std::string& mpirun, bool as_root, const std::string& hostfile,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> argv{mpirun};
  if (as_root) argv.emplace_back("--allow-run-as-root");
  argv.emplace_back("--oversubscribe");
  if (!hostfile.empty()) argv.insert(argv.end(), {"--hostfile", hostfile});
  const bool user_binds = std::any_of(extra.begin(), extra.end(), [](const std::string& a) {
    return a == "--bind-to" || a == "-bind-to" || a.starts_with("--bind-to=");
  });
  if (!user_binds) argv.insert(argv.end(), {"--bind-to", "none"});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::vector<std::string> mpirun_argv(const RunPlan& plan, const std::string& plan_path, const std::string& worker_exe,
                                     const std::string& retriever_exe, const RankEnvironment& rank_env,
                                     bool as_root) {
  const RunConfig& c = plan.config;
  // The user's `-x VAR[=VALUE]` go to every rank with ours: Open MPI applies a -x before the first app
  // context to that context only.
  std::vector<std::string> extra, env;
  for (size_t i = 0; i < c.mpirun_extra_args.size(); ++i) {
    const std::string& a = c.mpirun_extra_args[i];
    if (a == "-x" && i + 1 < c.mpirun_extra_args.size()) {
      env.push_back(c.mpirun_extra_args[++i]);
    } else {
      extra.push_back(a);
    }
  }
  env.insert(env.end(), rank_env.all.begin(), rank_env.all.end());
  std::vector<std::string> argv = mpirun_prefix(c.mpirun, as_root, c.hostfile, extra);
  const bool with_hosts = !c.hostfile.empty();

  auto app_context = [&](const std::string& host, const std::string& exe, const std::vector<std::string>& own) {
    argv.insert(argv.end(), {"-n", "1"});
    if (with_hosts) argv.insert(argv.end(), {"--host", host});
    for (const std::string& e : env) argv.insert(argv.end(), {"-x", e});
    for (const std::string& e : own) argv.insert(argv.end(), {"-x", e});
    argv.insert(argv.end(), {exe, "--plan", plan_path});
  };
  app_context(plan.worker_host, worker_exe, rank_env.worker);
  for (const RetrieverPlacement& r : plan.retrievers) {
    argv.emplace_back(":");
    app_context(r.host, retriever_exe, rank_env.retriever);
  }
  return argv;
}

std::string shell_quote_join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += ' ';
    const bool plain = !w.empty() && std::all_of(w.begin(), w.end(), [](unsigned char ch) {
      return std::isalnum(ch) || std::string_view("_@%+=:,./-").find(static_cast<char>(ch)) != std::string_view::npos;
    });
    if (plain) {
      out += w;
      continue;
    }
    out += '\'';
    for (const char ch : w) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    out += '\'';
  }
  return out;
}

}  // namespace ra
