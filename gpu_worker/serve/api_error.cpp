#include "gpu_worker/serve/api_error.h"

#include <utility>

namespace ra::serve {

ApiError::ApiError(int status, std::string type, const std::string& message, std::string param, std::string code)
    : Error(message), status_(status), type_(std::move(type)), param_(std::move(param)), code_(std::move(code)) {}

nlohmann::ordered_json ApiError::body() const {
  nlohmann::ordered_json e;
  e["message"] = what();
  e["type"] = type_;
  e["param"] = param_.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param_);
  e["code"] = code_.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code_);
  nlohmann::ordered_json out;
  out["error"] = std::move(e);
  return out;
}

ApiError invalid_request(const std::string& message, std::string param, std::string code) {
  return {400, "invalid_request_error", message, std::move(param), std::move(code)};
}

ApiError not_found(const std::string& message, std::string param, std::string code) {
  return {404, "invalid_request_error", message, std::move(param), std::move(code)};
}

ApiError server_busy(const std::string& message) { return {429, "rate_limit_error", message, {}, "queue_full"}; }

ApiError not_supported(const std::string& message, std::string param) {
  return {501, "invalid_request_error", message, std::move(param), "not_supported"};
}

ApiError unavailable(const std::string& message, std::string code) {
  return {503, "server_error", message, {}, code.empty() ? "unavailable" : std::move(code)};
}

ApiError timed_out(const std::string& message) { return {504, "server_error", message, {}, "timeout"}; }

ApiError internal_error(const std::string& message) { return {500, "server_error", message, {}, "internal_error"}; }

}  // namespace ra::serve
