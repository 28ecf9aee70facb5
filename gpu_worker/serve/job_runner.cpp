#include "gpu_worker/serve/job_runner.h"

#include <memory>
#include <string>

#include "gpu_worker/serve/stop_matcher.h"

namespace ra::serve {
namespace {

// The engine's tokens -> the job's text. One per job; on the decode thread.
class JobSink final : public TokenSink {
 public:
  JobSink(Job& job, const ServedModel& model, Metrics& metrics)
      : job_(job),
        metrics_(metrics),
        decoder_(model.tokenizer->stream_decoder(job.spec().prompt)),
        stop_(job.spec().stop_strings) {
    out_.reserve(256);
  }

  bool on_token(int32_t token, const StepStats& step) override {
    if (first_) {
      first_ = false;
      metrics_.time_to_first_token->Observe(job_.first_token());
    } else {
      metrics_.token_latency->Observe(step.seconds);
    }
    metrics_.generated_tokens->Increment();
    if (step.keys_scanned >= 0 && metrics_.keys_scanned()) {
      metrics_.keys_scanned()->Increment(static_cast<double>(step.keys_scanned));
    }
    if (prometheus::Histogram* h = metrics_.retriever_round_trip()) {
      for (const double s : step.round_trip_seconds) h->Observe(s);
    }
    out_.clear();
    const bool stopped = stop_.push(decoder_->put(token), out_);
    job_.append(out_);
    return !stopped;
  }

  // After the last token: the bytes the decoder held back, and the text held for a stop string.
  void end() {
    out_.clear();
    if (!stop_.stopped()) {
      stop_.push(decoder_->finish(), out_);
      stop_.flush(out_);
    }
    job_.append(out_);
  }

  bool stopped() const { return stop_.stopped(); }

 private:
  Job& job_;
  Metrics& metrics_;
  std::unique_ptr<StreamDecoder> decoder_;
  StopMatcher stop_;
  std::string out_;
  bool first_ = true;
};

}  // namespace

void run_job(Job& job, ServedModel& model, Metrics& metrics) {
  const JobSpec& spec = job.spec();
  GenerationStats stats;
  stats.finish = FinishReason::kCancelled;
  if (job.cancelled()) {
    job.finish(stats);
    metrics.count_request(spec.endpoint, Outcome::kCancelled);
    return;
  }
  job.started();
  Outcome outcome = Outcome::kOk;
  try {
    JobSink sink(job, model, metrics);
    GenerationRequest request;
    request.prompt = spec.prompt;
    request.reusable_prefix = spec.reusable_prefix;
    request.sampling = spec.sampling;
    request.max_tokens = spec.max_tokens;
    request.stop_tokens = spec.stop_tokens;
    request.cancel = &job.cancel_flag();
    stats = model.engine->generate(request, sink);
    sink.end();
    if (sink.stopped()) stats.finish = FinishReason::kStop;
    const int64_t prefilled = stats.prompt_tokens - stats.reused_tokens;
    metrics.prompt_tokens->Increment(static_cast<double>(stats.prompt_tokens));
    metrics.prefilled_tokens->Increment(static_cast<double>(prefilled));
    metrics.reused_tokens->Increment(static_cast<double>(stats.reused_tokens));
    if (prefilled > 0) metrics.prefill_seconds->Observe(stats.prefill_seconds);
    if (stats.finish == FinishReason::kCancelled) outcome = Outcome::kCancelled;
    job.finish(stats);
  } catch (const EngineFailure& e) {
    outcome = Outcome::kFailed;
    job.fail(unavailable(fmt::format("the engine failed: {}", e.what()), "engine_failed"));
  } catch (const ApiError& e) {
    outcome = e.status() >= 500 ? Outcome::kFailed : Outcome::kInvalid;
    job.fail(e);
  } catch (const Error& e) {  // the engine refused the request
    outcome = Outcome::kInvalid;
    job.fail(invalid_request(e.what()));
  } catch (const std::exception& e) {
    outcome = Outcome::kFailed;
    job.fail(internal_error(e.what()));
  }
  metrics.count_request(spec.endpoint, outcome);
}

}  // namespace ra::serve
