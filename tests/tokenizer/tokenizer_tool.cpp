// ra-tokenizer-tool: the C++ side of the tokenizer oracle test and of the tokenizer benchmark.
//
//   ra-tokenizer-tool check TOKENIZER_JSON CORPUS.bin EXPECTED.bin
//       Compares encode / decode / streaming decode on every corpus string with the oracle's results
//       (formats: make_corpus.mjs, oracle.mjs). Prints the counts; exit 1 on any difference.
//   ra-tokenizer-tool bench TOKENIZER_JSON TEXT_FILE [REPEAT]
//       Encodes the whole file in one call, single thread, REPEAT times (default 3) after a warm-up;
//       prints the best time as MB/s and tokens/s, then streams the ids back through the decoder.
//   ra-tokenizer-tool encode TOKENIZER_JSON TEXT
//       Prints the ids of TEXT.

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/hf_tokenizer.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

using Ids = std::vector<int32_t>;
using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Little-endian reader over the corpus / expected files.
class Reader {
 public:
  Reader(std::string bytes, const std::string& path, const char* magic) : bytes_(std::move(bytes)), path_(path) {
    RA_REQUIRE(bytes_.size() >= 12 && bytes_.compare(0, 4, magic) == 0, "{}: not a {} file", path, magic);
    pos_ = 4;
    RA_REQUIRE(u32() == 1, "{}: unknown version", path);
  }
  uint32_t u32() {
    RA_REQUIRE(pos_ + 4 <= bytes_.size(), "{}: truncated at byte {}", path_, pos_);
    uint32_t v = 0;
    std::memcpy(&v, bytes_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }
  std::string text() {
    const uint32_t n = u32();
    RA_REQUIRE(pos_ + n <= bytes_.size(), "{}: truncated at byte {}", path_, pos_);
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  Ids ids() {
    const uint32_t n = u32();
    Ids v(n);
    for (auto& x : v) x = static_cast<int32_t>(u32());
    return v;
  }

 private:
  std::string bytes_;
  std::string path_;
  size_t pos_ = 0;
};

std::string escaped(std::string_view s, size_t limit = 160) {
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("\\x{:02X}", c);
    }
  }
  return out.size() >= limit ? out + "..." : out;
}

std::string show(const Ids& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 40; ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + (ids.size() > 40 ? ",...]" : "]");
}

// Streams `ids` after `context`; false when a piece is not whole UTF-8.
bool stream(const HfTokenizer& tok, std::span<const int32_t> context, std::span<const int32_t> ids, std::string& out) {
  auto decoder = tok.stream_decoder(context, /*skip_special=*/true);
  bool whole = true;
  for (int32_t id : ids) {
    const std::string piece = decoder->put(id);
    whole = whole && utf8_is_valid(piece);
    out += piece;
  }
  const std::string last = decoder->finish();
  out += last;
  return whole && utf8_is_valid(last);
}

struct Check {
  const char* name;
  size_t passed = 0, total = 0, shown = 0;
  bool record(bool ok, size_t index, const std::string& input, const std::string& want, const std::string& got) {
    ++total;
    if (ok) {
      ++passed;
      return true;
    }
    if (shown++ < 3) {
      std::fprintf(stderr, "  %s MISMATCH at string %zu: input \"%s\"\n    want %s\n    got  %s\n", name, index,
                   escaped(input).c_str(), want.c_str(), got.c_str());
    }
    return false;
  }
};

int check(const std::string& tokenizer_json, const std::string& corpus_path, const std::string& expected_path) {
  const auto t0 = Clock::now();
  const HfTokenizer tok(tokenizer_json);
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  Reader corpus(read_file(corpus_path), corpus_path, "RATC");
  Reader expected(read_file(expected_path), expected_path, "RATE");
  const uint32_t n = corpus.u32();
  RA_REQUIRE(expected.u32() == n, "{} and {} hold different numbers of strings", corpus_path, expected_path);

  Check encode{"encode"}, encode_t{"encode+template"}, decode{"decode"}, decode_s{"decode(skip special)"},
      rdecode{"decode(random ids)"}, rdecode_s{"decode(random ids, skip special)"}, streamed{"stream"},
      rstreamed{"stream(random ids)"}, resumed{"stream after a prompt"};
  double encode_s = 0;
  size_t bytes = 0, invalid = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string input = corpus.text();
    const Ids ids = expected.ids(), ids_t = expected.ids();
    const std::string text = expected.text(), text_s = expected.text();
    const Ids random = expected.ids();
    const std::string rtext = expected.text(), rtext_s = expected.text();
    bytes += input.size();
    invalid += utf8_is_valid(input) ? 0 : 1;

    const auto e0 = Clock::now();
    const Ids got = tok.encode(input);
    encode_s += std::chrono::duration<double>(Clock::now() - e0).count();
    encode.record(got == ids, i, input, show(ids), show(got));
    const Ids got_t = tok.encode_with_template(input);
    encode_t.record(got_t == ids_t, i, input, show(ids_t), show(got_t));

    std::string s = tok.decode_ids(ids, false);
    decode.record(s == text, i, input, escaped(text), escaped(s));
    s = tok.decode_ids(ids_t, true);
    decode_s.record(s == text_s, i, input, escaped(text_s), escaped(s));
    s = tok.decode_ids(random, false);
    rdecode.record(s == rtext, i, show(random), escaped(rtext), escaped(s));
    s = tok.decode_ids(random, true);
    rdecode_s.record(s == rtext_s, i, show(random), escaped(rtext_s), escaped(s));

    s.clear();
    bool whole = stream(tok, {}, ids_t, s);
    streamed.record(whole && s == text_s, i, input, escaped(text_s), escaped(s) + (whole ? "" : " (a piece split a code point)"));
    s.clear();
    whole = stream(tok, {}, random, s);
    rstreamed.record(whole && s == rtext_s, i, show(random), escaped(rtext_s),
                     escaped(s) + (whole ? "" : " (a piece split a code point)"));

    // Generation after a prompt: the prompt is the first k ids; the stream must add exactly what the
    // whole decode adds to the prompt's (checked where the prompt's decode is a prefix of it, i.e. the
    // cut does not fall inside a code point).
    const size_t k = ids_t.empty() ? 0 : (i * 7919u) % (ids_t.size() + 1);
    const std::span<const int32_t> all(ids_t);
    const std::string prompt = tok.decode_ids(all.first(k), true);
    if (text_s.compare(0, prompt.size(), prompt) == 0) {
      s.clear();
      whole = stream(tok, all.first(k), all.subspan(k), s);
      const std::string want = text_s.substr(prompt.size());
      resumed.record(whole && s == want, i, input, escaped(want), escaped(s));
    }
  }

  std::printf("%s: %u strings (%zu bytes, %zu with ill-formed UTF-8), loaded in %.2f s, encoded in %.2f s\n",
              tokenizer_json.c_str(), n, bytes, invalid, load_s, encode_s);
  bool all_ok = true;
  for (const Check* c : {&encode, &encode_t, &decode, &decode_s, &rdecode, &rdecode_s, &streamed, &rstreamed, &resumed}) {
    std::printf("  %-36s %zu / %zu identical\n", c->name, c->passed, c->total);
    all_ok = all_ok && c->passed == c->total;
  }
  std::printf("%s\n", all_ok ? "PASS" : "FAIL");
  return all_ok ? 0 : 1;
}

// CPU time of this thread: on a shared machine, time the thread was not running does not count.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int bench(const std::string& tokenizer_json, const std::string& text_path, int repeat) {
  const std::string text = read_file(text_path);
  auto t0 = Clock::now();
  const HfTokenizer tok(tokenizer_json);
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  Ids ids = tok.encode(text);  // warm-up
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < repeat; ++r) {
    t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    ids = tok.encode(text);
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  t0 = Clock::now();
  std::string decoded;
  stream(tok, {}, ids, decoded);
  const double stream_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf("{\"impl\": \"ra (C++)\", \"tokenizer\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, \"load_s\": %.3f, "
              "\"encode_s\": %.4f, \"encode_cpu_s\": %.4f, \"mb_per_s\": %.2f, \"tokens_per_s\": %.0f, "
              "\"stream_decode_tokens_per_s\": %.0f}\n",
              tokenizer_json.c_str(), text.size(), ids.size(), load_s, best, best_cpu, mb / best,
              static_cast<double>(ids.size()) / best, static_cast<double>(ids.size()) / stream_s);
  return 0;
}

int run(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "check" && argc == 5) return check(argv[2], argv[3], argv[4]);
  if (cmd == "bench" && (argc == 4 || argc == 5)) return bench(argv[2], argv[3], argc == 5 ? std::atoi(argv[4]) : 3);
  if (cmd == "encode" && argc == 4) {
    const HfTokenizer tok(argv[2]);
    std::printf("%s\n", show(tok.encode(argv[3])).c_str());
    return 0;
  }
  std::fprintf(stderr,
               "usage: ra-tokenizer-tool check TOKENIZER_JSON CORPUS.bin EXPECTED.bin\n"
               "       ra-tokenizer-tool bench TOKENIZER_JSON TEXT_FILE [REPEAT]\n"
               "       ra-tokenizer-tool encode TOKENIZER_JSON TEXT\n");
  return 2;
}

}  // namespace
}  // namespace ra

int main(int argc, char** argv) {
  try {
    return ra::run(argc, argv);
  } catch (const ra::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
