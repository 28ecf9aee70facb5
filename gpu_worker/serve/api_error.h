#pragma once
// Errors as OpenAI's API reports them: an HTTP status and the body
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": "invalid_type"}}
// ("param" and "code" are null when they do not apply). Thrown by request parsing and the routes; the
// route wrapper (server_routes.h) turns one into the response.

#include <nlohmann/json.hpp>

#include <string>

#include "common/error.h"

namespace ra::serve {

class ApiError : public Error {
 public:
  ApiError(int status, std::string type, const std::string& message, std::string param = {}, std::string code = {});

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // {"error": {...}} as above.
  nlohmann::ordered_json body() const;

 private:
  int status_;
  std::string type_;
  std::string param_;
  std::string code_;
};

// 400: the request is malformed or asks for something the server cannot do with this model.
ApiError invalid_request(const std::string& message, std::string param = {}, std::string code = {});
// 404: an unknown model or context id.
ApiError not_found(const std::string& message, std::string param = {}, std::string code = {});
// 429: the queue is full (Retry-After is set by the route).
ApiError server_busy(const std::string& message);
// 501: a feature this engine does not have (prebuilt contexts on a backend that cannot reuse KV).
ApiError not_supported(const std::string& message, std::string param = {});
// 503: the model is loading or the engine failed; `message` names the cause.
ApiError unavailable(const std::string& message, std::string code = {});
// 504: the request did not finish before its deadline.
ApiError timed_out(const std::string& message);
// 500: a bug of ours.
ApiError internal_error(const std::string& message);

}  // namespace ra::serve
