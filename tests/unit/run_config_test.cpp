// The run configuration: YAML and JSON files, precedence (defaults < --config < flags), the
// --print-config round trip, errors that name the key and the file, and every file in configs/.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/synthetic_model.h"
#include "launcher/config/run_config.h"
#include "tests/support/error_message.h"
#include "tests/support/read_file.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class RunConfigFiles : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const fs::path file = dir_.path() / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << text;
    EXPECT_TRUE(out.good()) << file;
    return file.string();
  }

  // The ra::Error message of load_run_config(path), or "" when it loads.
  static std::string load_error(const std::string& path) {
    return test::error_message([&] { load_run_config(path); });
  }

  test::TempDir dir_;
};

std::string validate_error(const RunConfig& c) {
  return test::error_message([&] { validate(c); });
}

// A config with every field away from its default.
RunConfig everything_changed() {
  RunConfig c;
  c.model = "";
  c.tokenizer = "bytes";
  c.prompt = "héllo \"world\"\n\ttab: # not a comment";
  c.synthetic_prompt_bytes = 4096;
  c.max_new_tokens = 7;
  c.ignore_eos = true;
  c.temperature = 0.8f;
  c.seed = 18446744073709551615ull;
  c.mode = AttentionMode::kHnsw;
  c.sinks = 4;
  c.window = 32;
  c.index = {.top_k = 10, .ef = 40, .nprobe = 3, .graph_M = 16, .graph_Kq = 50, .graph_ef_construction = 20,
             .graph_max_train_queries = 1000, .ivf_nlist = 64, .hnsw_M = 8, .hnsw_ef_construction = 30};
  c.index.graph_navigation = GraphNavigation::kInt8;
  c.transport = TransportKind::kUcx;
  c.retrievers = 3;
  c.hostfile = "hosts.txt";
  c.worker_threads = 2;
  c.retriever_threads = 5;
  c.kv_dtype = "int8/bf16";
  c.liveness_timeout_ms = 250;
  c.build_timeout_ms = 90000;
  c.mpirun = "/opt/ompi/bin/mpirun";
  c.mpirun_extra_args = {"-x", "UCX_TLS=rc,sm", "--mca", "btl ^openib"};
  c.geometry = SyntheticModelSpec{.hidden_size = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                                     .head_dim = 16, .intermediate_size = 96, .max_position_embeddings = 5000,
                                     .seed = 9};
  return c;
}

TEST(RunConfigNames, ModesAndTransportsRoundTrip) {
  for (const char* n : {"full", "window", "flat", "ivf", "hnsw", "retrieval"}) EXPECT_EQ(name(parse_mode(n)), n);
  for (const char* n : {"shm", "ucx"}) EXPECT_EQ(name(parse_transport(n)), n);
  EXPECT_THAT([] { parse_mode("fast"); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("'fast'"), HasSubstr("retrieval"))));
  EXPECT_THROW(parse_transport("tcp"), Error);
  EXPECT_FALSE(needs_retrievers(AttentionMode::kFull));
  EXPECT_FALSE(needs_retrievers(AttentionMode::kWindow));
  for (AttentionMode m : {AttentionMode::kFlat, AttentionMode::kIvf, AttentionMode::kHnsw, AttentionMode::kRetrieval}) {
    EXPECT_TRUE(needs_retrievers(m)) << name(m);
  }
}

TEST(RunConfigDefaults, AreValidAndMatchTheBrief) {
  const RunConfig c;
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(c.mode, AttentionMode::kFull);
  EXPECT_EQ(c.sinks, 128);
  EXPECT_EQ(c.window, 512);
  EXPECT_EQ(c.index.top_k, 100);
  EXPECT_EQ(c.transport, TransportKind::kShm);
  EXPECT_FALSE(c.geometry.has_value());
}

TEST_F(RunConfigFiles, LoadsYaml) {
  const std::string path = write("run.yaml", R"(# a comment
model: /models/x
mode: retrieval
sinks: 16
window: 64
temperature: 0.5
retrievers: 2
transport: ucx
mpirun_extra_args: [-x, "FOO=1"]
index:
  top_k: 20
  ef: 64
geometry:
  n_layers: 2
)");
  const RunConfig c = load_run_config(path);
  EXPECT_EQ(c.model, "/models/x");
  EXPECT_EQ(c.mode, AttentionMode::kRetrieval);
  EXPECT_EQ(c.sinks, 16);
  EXPECT_EQ(c.window, 64);
  EXPECT_FLOAT_EQ(c.temperature, 0.5f);
  EXPECT_EQ(c.retrievers, 2);
  EXPECT_EQ(c.transport, TransportKind::kUcx);
  EXPECT_EQ(c.mpirun_extra_args, (std::vector<std::string>{"-x", "FOO=1"}));
  EXPECT_EQ(c.index.top_k, 20);
  EXPECT_EQ(c.index.ef, 64);
  EXPECT_EQ(c.index.graph_M, 32);  // untouched keys keep their defaults
  ASSERT_TRUE(c.geometry.has_value());
  EXPECT_EQ(c.geometry->n_layers, 2);
  EXPECT_EQ(c.geometry->hidden_size, 256);
  EXPECT_EQ(c.max_new_tokens, 64);
}

TEST_F(RunConfigFiles, YamlStringsKeepTheirText) {
  // Plain scalars that look like numbers or booleans are still strings for string keys.
  const RunConfig c = load_run_config(write("s.yml", "prompt: 007\ntokenizer: true\nmodel:\n"));
  EXPECT_EQ(c.prompt, "007");
  EXPECT_EQ(c.tokenizer, "true");
  EXPECT_EQ(c.model, "");
}

TEST_F(RunConfigFiles, EmptyYamlIsAllDefaults) {
  EXPECT_EQ(load_run_config(write("empty.yaml", "")), RunConfig{});
  EXPECT_EQ(load_run_config(write("comment.yaml", "# nothing\n")), RunConfig{});
}

TEST_F(RunConfigFiles, LoadsJson) {
  const std::string path = write("run.json", R"({"mode": "ivf", "retrievers": 4, "seed": 42,
    "index": {"nprobe": 8}, "geometry": null, "temperature": 1})");
  const RunConfig c = load_run_config(path);
  EXPECT_EQ(c.mode, AttentionMode::kIvf);
  EXPECT_EQ(c.retrievers, 4);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.index.nprobe, 8);
  EXPECT_FLOAT_EQ(c.temperature, 1.0f);
  EXPECT_FALSE(c.geometry.has_value());
}

TEST_F(RunConfigFiles, YamlAndJsonAgree) {
  const RunConfig want = everything_changed();
  const std::string json_path = write("all.json", to_json(want).dump(2));
  const std::string yaml_path = write("all.yaml", to_yaml(want));
  EXPECT_EQ(load_run_config(json_path), want);
  EXPECT_EQ(load_run_config(yaml_path), want);
}

TEST_F(RunConfigFiles, PrintConfigRoundTrips) {
  for (const RunConfig& c : {RunConfig{}, everything_changed()}) {
    const std::string text = to_yaml(c);
    EXPECT_EQ(load_run_config(write("printed.yaml", text)), c) << text;
    EXPECT_EQ(run_config_from_json(to_json(c), "json"), c);
  }
}

TEST(RunConfigPrint, ListsEveryKeyWithItsDoc) {
  const std::string text = to_yaml(RunConfig{});
  for (const ConfigField& f : run_config_fields()) {
    if (f.key.starts_with("geometry.")) continue;  // absent geometry prints as one null line
    const std::string leaf = f.key.substr(f.key.find('.') + 1);
    EXPECT_THAT(text, HasSubstr(leaf + ": " + f.default_value + "  # " + f.doc)) << f.key;
  }
  EXPECT_THAT(text, HasSubstr("geometry: null"));
  EXPECT_THAT(text, HasSubstr("\nindex:\n  top_k: 100"));
}

TEST_F(RunConfigFiles, UnknownKeysNameTheKeyAndTheFile) {
  const std::string y = write("unknown.yaml", "mode: flat\nwindw: 3\n");
  EXPECT_THAT(load_error(y), AllOf(HasSubstr(y + ":2"), HasSubstr("unknown key 'windw'"), HasSubstr("'window'")));
  const std::string nested = write("nested.yaml", "index:\n  topk: 3\n");
  EXPECT_THAT(load_error(nested), AllOf(HasSubstr(nested), HasSubstr("'index.topk'"), HasSubstr("'index.top_k'")));
  const std::string j = write("unknown.json", R"({"geometry": {"layers": 2}})");
  EXPECT_THAT(load_error(j), AllOf(HasSubstr(j), HasSubstr("unknown key 'geometry.layers'")));
  const std::string dotted = write("dotted.yaml", "mode: flat\nindex.top_k: 5\n");
  EXPECT_THAT(load_error(dotted), AllOf(HasSubstr(dotted + ":2"), HasSubstr("'index.top_k'"), HasSubstr("as a map")));
  const std::string dotted_json = write("dotted.json", R"({"index.top_k": 5})");
  EXPECT_THAT(load_error(dotted_json), AllOf(HasSubstr(dotted_json), HasSubstr("as a map")));
  const std::string null_line = write("null.yaml", "mode: flat\n\nwindw:\n");
  EXPECT_THAT(load_error(null_line), HasSubstr(null_line + ":3: unknown key 'windw'"));
  const std::string misplaced = write("misplaced.yaml", "top_k: 5\n");
  EXPECT_THAT(load_error(misplaced), AllOf(HasSubstr("unknown key 'top_k'"), HasSubstr("'index.top_k'")));
}

TEST_F(RunConfigFiles, TypeErrorsNameKeyFileAndExpectedType) {
  struct Case {
    std::string name, text, key, expected;
  };
  const std::vector<Case> cases = {
      {"a.yaml", "sinks: many\n", "'sinks'", "an integer"},
      {"b.yaml", "temperature: warm\n", "'temperature'", "a number"},
      {"c.yaml", "index:\n  top_k: 1.5\n", "'index.top_k'", "a 32-bit integer"},
      {"d.yaml", "retrievers: 99999999999\n", "'retrievers'", "a 32-bit integer"},
      {"e.yaml", "seed: -1\n", "'seed'", "a non-negative integer"},
      {"f.yaml", "mode: fast\n", "'mode'", "one of full, window, flat, ivf, hnsw, retrieval"},
      {"g.yaml", "model: [a, b]\n", "'model'", "a string"},
      {"h.yaml", "mpirun_extra_args: -x\n", "'mpirun_extra_args'", "a list of strings"},
      {"i.yaml", "index: 5\n", "'index'", "a map of keys"},
      {"j.json", R"({"window": "big"})", "'window'", "an integer"},
      {"k.json", R"({"transport": 1})", "'transport'", "one of shm, ucx"},
      {"l.json", R"({"prompt": 5})", "'prompt'", "a string"},
      {"m.json", R"({"index": {"ef": true}})", "'index.ef'", "a 32-bit integer"},
      {"n.yaml", "backend: gpu\n", "'backend'", "one of auto, cpu, cuda"},
  };
  for (const Case& c : cases) {
    const std::string path = write(c.name, c.text);
    EXPECT_THAT(load_error(path), AllOf(HasSubstr(path), HasSubstr(c.key), HasSubstr(c.expected))) << c.text;
  }
}

TEST_F(RunConfigFiles, FileErrors) {
  EXPECT_THAT(load_error((dir_.path() / "missing.yaml").string()), HasSubstr("missing.yaml: cannot open"));
  EXPECT_THAT(load_error(write("run.toml", "")), HasSubstr("unknown config format '.toml'"));
  const std::string bad_yaml = write("bad.yaml", "mode: [flat\n");
  EXPECT_THAT(load_error(bad_yaml), AllOf(HasSubstr(bad_yaml), HasSubstr("YAML syntax error")));
  const std::string bad_json = write("bad.json", "{\"mode\": ");
  EXPECT_THAT(load_error(bad_json), AllOf(HasSubstr(bad_json), HasSubstr("JSON syntax error")));
  const std::string list = write("list.yaml", "- mode\n");
  EXPECT_THAT(load_error(list), AllOf(HasSubstr(list), HasSubstr("must be a map of keys")));
}

TEST(RunConfigValidate, NamesTheFieldAndTheValue) {
  struct Case {
    void (*change)(RunConfig&);
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](RunConfig& c) { c.window = 0; }, "window must be >= 1 (got 0)"},
      {[](RunConfig& c) { c.sinks = -1; }, "sinks must be >= 0 (got -1)"},
      {[](RunConfig& c) { c.mode = AttentionMode::kFlat; c.retrievers = 0; }, "retrievers must be >= 1 in mode flat"},
      {[](RunConfig& c) { c.retrievers = -2; }, "retrievers must be >= 0 (got -2)"},
      {[](RunConfig& c) { c.index.top_k = 0; }, "index.top_k must be >= 1"},
      {[](RunConfig& c) { c.mode = AttentionMode::kHnsw; c.index.ef = 50; },
       "index.ef must be 0 (the index default) or >= index.top_k (100) in mode hnsw (got 50)"},
      {[](RunConfig& c) { c.index.hnsw_M = 1; }, "index.hnsw_M must be >= 2"},
      {[](RunConfig& c) { c.index.graph_M = 0; }, "index.graph_M must be >= 1"},
      {[](RunConfig& c) { c.temperature = -0.5f; }, "temperature must be >= 0"},
      {[](RunConfig& c) { c.top_p = 0.0f; }, "top_p must be in (0, 1]"},
      {[](RunConfig& c) { c.top_p = 1.5f; }, "top_p must be in (0, 1]"},
      {[](RunConfig& c) { c.index.scan_fraction = -0.1f; }, "index.scan_fraction must be in [0, 1]"},
      {[](RunConfig& c) { c.index.scan_fraction = 1.5f; }, "index.scan_fraction must be in [0, 1]"},
      {[](RunConfig& c) { c.max_new_tokens = -1; }, "max_new_tokens must be >= 0"},
      {[](RunConfig& c) { c.synthetic_prompt_bytes = 0; }, "synthetic_prompt_bytes must be >= 1"},
      {[](RunConfig& c) { c.liveness_timeout_ms = 0; }, "liveness_timeout_ms must be >= 1"},
      {[](RunConfig& c) { c.build_timeout_ms = -5; }, "build_timeout_ms must be >= 1"},
      {[](RunConfig& c) { c.retriever_threads = -1; }, "retriever_threads must be >= 0"},
      {[](RunConfig& c) { c.worker_threads = -1; }, "worker_threads must be >= 0"},
      {[](RunConfig& c) { c.mpirun.clear(); }, "mpirun must name"},
      {[](RunConfig& c) { c.prompt = "a"; c.prompt_file = "b"; }, "prompt and prompt_file are exclusive"},
      {[](RunConfig& c) { c.prompt = "\xff"; }, "prompt is not valid UTF-8"},
      {[](RunConfig& c) { c.geometry.emplace(); c.model = "m"; }, "geometry is for the embedded synthetic model"},
      {[](RunConfig& c) { c.geometry.emplace(); c.geometry->n_kv_heads = 3; }, "geometry.n_heads (8) must be a multiple"},
      {[](RunConfig& c) { c.geometry.emplace(); c.geometry->head_dim = 31; }, "geometry.head_dim must be even"},
      {[](RunConfig& c) { c.geometry.emplace(); c.geometry->n_layers = 0; }, "geometry.n_layers must be >= 1"},
      {[](RunConfig& c) { c.kv_dtype = "int4"; }, "kv_dtype must be auto, bf16, f16, f32, int8 or key/value (got 'int4')"},
      {[](RunConfig& c) { c.kv_dtype = "int8/"; }, "kv_dtype must be auto"},
      {[](RunConfig& c) {
         c.mode = AttentionMode::kRetrieval;
         c.kv_dtype = "int8/bf16";
         c.index.graph_navigation = GraphNavigation::kInt8;
       },
       "index.graph_navigation int8 walks an 8-bit copy of the keys, but kv_dtype 'int8/bf16'"},
  };
  for (const Case& k : cases) {
    RunConfig c;
    k.change(c);
    EXPECT_THAT(validate_error(c), HasSubstr(k.message));
  }
  RunConfig full;
  full.retrievers = 0;  // unused without a CPU part
  EXPECT_EQ(validate_error(full), "");
  EXPECT_EQ(validate_error(everything_changed()), "");
}

TEST_F(RunConfigFiles, BadValuesInFilesAreCaughtByValidate) {
  const RunConfig c = load_run_config(write("v.yaml", "mode: retrieval\nretrievers: 0\n"));
  EXPECT_THAT(validate_error(c), HasSubstr("retrievers must be >= 1 in mode retrieval (got 0)"));
}

// Parses `args` as `ra generate ...` with the run-config options registered, then resolves.
RunConfig resolve(const std::vector<std::string>& args, RunConfigFlags* out_flags = nullptr) {
  CLI::App app;
  RunConfigFlags flags;
  add_run_config_options(app, flags);
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  app.parse(reversed);
  if (out_flags != nullptr) {
    out_flags->print_config = flags.print_config;
    out_flags->dry_run = flags.dry_run;
  }
  return resolve_run_config(flags);
}

TEST_F(RunConfigFiles, PrecedenceDefaultsThenFileThenFlags) {
  const std::string path = write("p.yaml", "mode: flat\nsinks: 8\nwindow: 100\nretrievers: 3\nprompt_file: p.txt\n"
                                           "index:\n  top_k: 50\n");
  EXPECT_EQ(resolve({}), RunConfig{});

  const RunConfig from_file = resolve({"--config", path});
  EXPECT_EQ(from_file.mode, AttentionMode::kFlat);
  EXPECT_EQ(from_file.sinks, 8);
  EXPECT_EQ(from_file.index.top_k, 50);
  EXPECT_EQ(from_file.seed, 0u);  // default

  const RunConfig flags = resolve({"--config", path, "--sinks", "2", "--top-k", "7", "--mode", "retrieval",
                                   "--transport", "ucx", "--threads", "3", "--prompt", "hi", "--seed", "5"});
  EXPECT_EQ(flags.sinks, 2);                    // flag beats file
  EXPECT_EQ(flags.window, 100);                 // file beats default
  EXPECT_EQ(flags.retrievers, 3);
  EXPECT_EQ(flags.index.top_k, 7);
  EXPECT_EQ(flags.mode, AttentionMode::kRetrieval);
  EXPECT_EQ(flags.transport, TransportKind::kUcx);
  EXPECT_EQ(flags.worker_threads, 3);
  EXPECT_EQ(flags.seed, 5u);
  EXPECT_EQ(flags.prompt, "hi");
  EXPECT_EQ(flags.prompt_file, "");             // a prompt on the command line replaces the file's

  // A flag equal to the default still overrides the file.
  EXPECT_EQ(resolve({"--config", path, "--window", "512"}).window, 512);
}

TEST_F(RunConfigFiles, FlagsAreValidatedAndBoolFlagsParse) {
  RunConfigFlags f;
  const RunConfig c = resolve({"--print-config", "--dry-run", "--retrievers", "2"}, &f);
  EXPECT_TRUE(f.print_config);
  EXPECT_TRUE(f.dry_run);
  EXPECT_EQ(c.retrievers, 2);
  EXPECT_THAT([] { resolve({"--mode", "flat", "--retrievers", "0"}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("retrievers must be >= 1 in mode flat")));
  EXPECT_THROW(resolve({"--mode", "fast"}), CLI::ValidationError);
  EXPECT_THROW(resolve({"--prompt", "a", "--prompt-file", "b"}), CLI::ExcludesError);
  const std::string bad = write("bad.yaml", "sinks: x\n");
  EXPECT_THAT([&] { resolve({"--config", bad}); }, ::testing::ThrowsMessage<Error>(HasSubstr(bad)));
}

// A boolean key takes YAML's true/false (and JSON's), and nothing else: 1 or "yes" name the key.
TEST_F(RunConfigFiles, BooleansAreTrueOrFalse) {
  EXPECT_TRUE(load_run_config(write("a.yaml", "ignore_eos: true\n")).ignore_eos);
  EXPECT_FALSE(load_run_config(write("b.yaml", "ignore_eos: false\n")).ignore_eos);
  EXPECT_TRUE(load_run_config(write("c.json", "{\"ignore_eos\": true}")).ignore_eos);
  EXPECT_THAT(load_error(write("d.yaml", "ignore_eos: 1\n")),
              AllOf(HasSubstr("d.yaml:1"), HasSubstr("'ignore_eos'"), HasSubstr("true or false")));
  EXPECT_THAT(load_error(write("e.yaml", "ignore_eos: yes\n")), HasSubstr("true or false"));
  EXPECT_EQ(load_run_config(write("f.yaml", "index:\n  graph_navigation: int8\n")).index.graph_navigation,
            GraphNavigation::kInt8);
  EXPECT_THAT(load_error(write("g.yaml", "index:\n  graph_navigation: int4\n")), HasSubstr("exact, int8"));
}

TEST(RunConfigFlagsHelp, ListsEveryFlag) {
  CLI::App app;
  RunConfigFlags flags;
  add_run_config_options(app, flags);
  const std::string help = app.help();
  for (const char* opt : {"--config", "--print-config", "--dry-run", "--mode", "--transport", "--retrievers",
                          "--hostfile", "--sinks", "--window", "--top-k", "--ef", "--nprobe", "--retriever-threads",
                          "--liveness-timeout-ms", "--model", "--tokenizer", "--prompt", "--prompt-file",
                          "--max-new-tokens", "--temperature", "--top-p", "--seed", "--backend", "--threads",
                          "--synthetic-prompt-bytes"}) {
    EXPECT_THAT(help, HasSubstr(opt));
  }
}

// Every ready config loads and validates, and the README documents every key and every file.
TEST(ReadyConfigs, AllLoadAndValidate) {
  const fs::path dir = fs::path(RA_SOURCE_DIR) / "configs";
  int count = 0;
  const std::string readme = test::read_file(dir / "README.md");
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".yaml" && ext != ".yml" && ext != ".json") continue;
    SCOPED_TRACE(e.path().string());
    RunConfig c;
    ASSERT_NO_THROW(c = load_run_config(e.path().string()));
    EXPECT_NO_THROW(validate(c));
    EXPECT_THAT(readme, HasSubstr("`" + e.path().filename().string() + "`"));
    ++count;
  }
  EXPECT_GE(count, 9);
  for (const ConfigField& f : run_config_fields()) {
    EXPECT_THAT(readme, HasSubstr("| `" + f.key + "` | " + f.default_value + " |")) << f.key;
  }
}

TEST(ReadyConfigs, Llama3GeometryAndContext) {
  const fs::path dir = fs::path(RA_SOURCE_DIR) / "configs";
  for (const auto& [file, positions] : {std::pair{"llama3-8b-128k.yaml", 131072}, {"llama3-8b-1m.yaml", 1048576}}) {
    const RunConfig c = load_run_config((dir / file).string());
    ASSERT_TRUE(c.geometry.has_value()) << file;
    EXPECT_EQ(c.geometry->hidden_size, 4096);
    EXPECT_EQ(c.geometry->n_layers, 32);
    EXPECT_EQ(c.geometry->n_heads, 32);
    EXPECT_EQ(c.geometry->n_kv_heads, 8);
    EXPECT_EQ(c.geometry->head_dim, 128);
    EXPECT_EQ(c.geometry->intermediate_size, 14336);
    EXPECT_EQ(c.geometry->max_position_embeddings, positions);
    EXPECT_EQ(c.mode, AttentionMode::kRetrieval);
    EXPECT_EQ(c.retrievers, 4);
    // BOS + the synthetic prompt + the generated tokens fit the context.
    EXPECT_LE(1 + c.synthetic_prompt_bytes + c.max_new_tokens, positions) << file;
  }
  const RunConfig demo = load_run_config((dir / "demo.yaml").string());
  EXPECT_EQ(demo.model, "");
  EXPECT_EQ(demo.mode, AttentionMode::kRetrieval);
  EXPECT_EQ(demo.retrievers, 1);
  EXPECT_LT(demo.sinks + demo.window, demo.synthetic_prompt_bytes);
}

}  // namespace
}  // namespace ra
