// What `ra serve` hands the worker rank (RA_SERVE) round-trips and is checked field by field; a saved
// context's manifest is refused naming the file and the field.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "gpu_worker/serve/context_files.h"
#include "gpu_worker/serve/serve_spec.h"

namespace ra::serve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ServeSpec, RoundTripsThroughJson) {
  ServeSpec s;
  s.server.host = "0.0.0.0";
  s.server.port = 9;
  s.server.queue_capacity = 3;
  s.server.log_requests = false;
  s.port_file = "/tmp/p";
  s.ctx = 4096;
  s.load = "/tmp/ctx";
  s.exit_grace_seconds = 0.5;
  const ServeSpec t = serve_spec_from_json(to_json(s).dump(), "test");
  EXPECT_EQ(t.server.host, "0.0.0.0");
  EXPECT_EQ(t.server.port, 9);
  EXPECT_EQ(t.server.queue_capacity, 3u);
  EXPECT_FALSE(t.server.log_requests);
  EXPECT_EQ(t.port_file, "/tmp/p");
  EXPECT_EQ(t.ctx, 4096);
  EXPECT_EQ(t.load, "/tmp/ctx");
  EXPECT_EQ(t.exit_grace_seconds, 0.5);
}

TEST(ServeSpec, BadSpecsNameTheField) {
  EXPECT_THAT(error_of([] { serve_spec_from_json(R"({"port": "80"})", "RA_SERVE"); }),
              AllOf(HasSubstr("RA_SERVE"), HasSubstr("'port'")));
  EXPECT_THAT(error_of([] { serve_spec_from_json(R"({"action": "dance"})", "RA_SERVE"); }), HasSubstr("'action'"));
  EXPECT_THAT(error_of([] { serve_spec_from_json(R"({"action": "prefill"})", "RA_SERVE"); }), HasSubstr("'save'"));
  EXPECT_THAT(error_of([] { serve_spec_from_json("{", "RA_SERVE"); }), HasSubstr("not valid JSON"));
}

TEST(ContextFiles, ManifestProblemsNameTheFileAndField) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ra-manifest-test";
  fs::remove_all(dir);
  ContextIdentity id;
  id.model = "m";
  id.model_digest = "0123456789abcdef";
  id.n_layers = 2;
  id.n_heads = 4;
  id.n_kv_heads = 2;
  id.head_dim = 16;
  id.vocab_size = 258;
  id.mode = "flat";
  id.sinks = 8;
  id.window = 16;
  {
    ContextWriter w(dir.string());
    w.open("a.bin");
    const float x[3] = {1, 2, 3};
    w.write_floats(x, 3);
    w.close();
    const int32_t tokens[] = {256, 65, 66};
    w.finish(id, tokens);
  }
  const ContextReader ok(dir.string(), id);
  EXPECT_EQ(ok.tokens(), (std::vector<int32_t>{256, 65, 66}));
  EXPECT_EQ(ok.read("a.bin").size(), 12u);
  EXPECT_THAT(error_of([&] { ok.read("b.bin"); }), HasSubstr("'files.b.bin' is missing"));
  EXPECT_THAT(error_of([&] { ContextWriter again(dir.string()); }), HasSubstr("already holds a saved context"));
  ContextIdentity other = id;
  other.model_digest = "fedcba9876543210";
  EXPECT_THAT(error_of([&] { ContextReader r(dir.string(), other); }),
              AllOf(HasSubstr("manifest.json"), HasSubstr("identity.model_digest"), HasSubstr("another checkpoint")));
  other = id;
  other.mode = "hnsw";  // keys only, like flat: accepted
  EXPECT_NO_THROW(ContextReader(dir.string(), other));
  other.mode = "full";
  EXPECT_THAT(error_of([&] { ContextReader r(dir.string(), other); }), HasSubstr("identity.mode"));
  other = id;
  other.head_dim = 32;
  EXPECT_THAT(error_of([&] { ContextReader r(dir.string(), other); }), HasSubstr("identity.head_dim"));
  // A truncated file, then a manifest with a field of the wrong type.
  fs::resize_file(dir / "a.bin", 8);
  EXPECT_THAT(error_of([&] { ok.read("a.bin"); }), AllOf(HasSubstr("a.bin"), HasSubstr("files.a.bin.bytes")));
  {
    std::ifstream in(dir / "manifest.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = text.find("\"n_tokens\"");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, std::string("\"n_tokens\"").size(), "\"n_tokens\": \"three\", \"ignored\"");
    std::ofstream(dir / "manifest.json") << text;
  }
  EXPECT_THAT(error_of([&] { ContextReader r(dir.string(), id); }),
              AllOf(HasSubstr("manifest.json"), HasSubstr("'n_tokens' has the wrong type")));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ra::serve
