#include "app/replay_input.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace prefixd {

namespace {

// Calls `on_line(json, where)` for each non-blank line; stops at the first error.
template <typename F>
Status ForEachJsonLine(const std::string& path, const char* what, F on_line) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open the ", what, " ", path));
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", line_number, ": ");
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(where + "not a JSON object");
    }
    try {
      RETURN_IF_ERROR(on_line(j, where));
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, "a field is missing or has the wrong type (", e.what(), ")"));
    }
  }
  return absl::OkStatus();
}

Status ParseTraceLine(const nlohmann::json& j, const std::string& where, TraceRequest& r) {
  r.timestamp = j.value("timestamp", 0.0);
  r.input_length = j.at("input_length").get<int64_t>();
  r.output_length = j.value("output_length", int64_t{0});
  r.hash_ids = j.at("hash_ids").get<std::vector<int64_t>>();
  const int64_t need = (r.input_length + kTraceBlockTokens - 1) / kTraceBlockTokens;
  if (r.input_length < 0 || r.output_length < 0 || static_cast<int64_t>(r.hash_ids.size()) < need) {
    return absl::InvalidArgumentError(absl::StrCat(where, "input_length ", r.input_length, " needs ", need,
                                                   " hash_ids of ", kTraceBlockTokens, " tokens, it has ",
                                                   r.hash_ids.size()));
  }
  for (int64_t h : r.hash_ids) {
    if (h < 0 || h >= (int64_t{1} << 31) / kTraceBlockTokens - 1) {
      return absl::InvalidArgumentError(absl::StrCat(where, "hash id ", h, " is out of range"));
    }
  }
  return absl::OkStatus();
}

Status ParseHeader(const nlohmann::json& j, const std::string& where, RequestLogFile& log) {
  const int version = j.value("prefixd_request_log", 0);
  if (version != 1 && version != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, version == 0 ? "not a prefixd request log (the first line must be its header, "
                              "{\"prefixd_request_log\":2,...}, as serve --request-log writes)"
                            : absl::StrCat("request log version ", version, " is newer than this "
                                           "prefixd reads (1 and 2): replay it with the prefixd "
                                           "that wrote it")));
  }
  log.version = version;
  RequestLogHeader& h = log.header;
  h.prefix_cache = j.value("prefix_cache", true);
  h.block_size = j.at("block_size").get<int>();
  h.block_bytes = j.at("block_bytes").get<int64_t>();
  h.num_kv_blocks = j.at("num_kv_blocks").get<int64_t>();
  h.max_cached_blocks = j.at("max_cached_blocks").get<int64_t>();
  h.max_chunk_tokens = j.at("max_chunk_tokens").get<int>();
  h.max_batch_tokens = j.at("max_batch_tokens").get<int>();
  h.host_bytes = j.at("host_bytes").get<int64_t>();
  h.disk_bytes = j.at("disk_bytes").get<int64_t>();
  h.disk_scope = j.at("disk_scope").get<std::string>();
  h.min_tokens = j.at("min_tokens").get<int64_t>();
  h.partial_max_entries = j.at("partial_max_entries").get<int>();
  h.partial_supported = j.at("partial_supported").get<bool>();
  h.retention_max_share = j.value("retention_max_share", 0.5);
  h.disk_start_blocks = j.value("disk_start_blocks", int64_t{0});
  return absl::OkStatus();
}

void ParseServerFigures(const nlohmann::json& j, LoggedRequest& r) {
  r.cached_tokens = j.value("cached_tokens", int64_t{0});
  if (j.contains("by_tier")) {
    const nlohmann::json& t = j.at("by_tier");
    r.host_tokens = t.value("host", int64_t{0});
    r.disk_tokens = t.value("disk", int64_t{0});
    r.partial_tokens = t.value("partial", int64_t{0});
  }
}

Status ParseScope(const nlohmann::json& j, const std::string& where, LoggedRequest& r) {
  if (!j.contains("scope")) return absl::OkStatus();
  auto scope = ParseScopeSpec(j.at("scope").get<std::string>());
  if (!scope.ok()) return absl::InvalidArgumentError(where + std::string(scope.status().message()));
  r.scope = *scope;
  return absl::OkStatus();
}

Status ParseRequest(const nlohmann::json& j, const std::string& where, LoggedRequest& r) {
  r.salt = j.value("salt", std::string());
  r.tokens = j.at("tokens").get<std::vector<int32_t>>();
  r.num_prompt = j.at("prompt_tokens").get<int64_t>();
  r.num_computed = j.at("computed_tokens").get<int64_t>();
  r.message_starts = j.value("message_starts", std::vector<int64_t>());
  RETURN_IF_ERROR(ParseScope(j, where, r));
  ParseServerFigures(j, r);
  r.finished = true;
  if (r.num_prompt < 1 || r.num_computed < 1 || static_cast<int64_t>(r.tokens.size()) < r.num_prompt ||
      static_cast<int64_t>(r.tokens.size()) < r.num_computed) {
    return absl::InvalidArgumentError(absl::StrCat(where, "prompt_tokens ", r.num_prompt, " and computed_tokens ",
                                                   r.num_computed, " must be >= 1 and within the ",
                                                   r.tokens.size(), " tokens"));
  }
  return absl::OkStatus();
}

// Version 2's lines (engine/request_log.h), into `log`; `by_seq` maps sequence ids to requests.
class OpParser {
 public:
  explicit OpParser(RequestLogFile& log) : log_(log) {}

  Status Parse(const nlohmann::json& j, const std::string& where, int line) {
    const std::string op = j.at("op").get<std::string>();
    LoggedOp o;
    o.line = line;
    if (op == "time") {
      o.kind = LoggedOp::Kind::kTime;
      o.value = j.at("ms").get<int64_t>();
    } else if (op == "request") {
      return ParseRequestOp(j, where);
    } else if (op == "reads" || op == "admit" || op == "write" || op == "prompt" ||
               op == "finish") {
      ASSIGN_OR_RETURN(o.request, Find(j.at("seq").get<int64_t>(), where));
      if (op == "reads") {
        o.kind = LoggedOp::Kind::kReads;
        o.value = j.at("known").get<int64_t>();
      } else if (op == "admit") {
        o.kind = LoggedOp::Kind::kAdmit;
        o.value = j.at("known").get<int64_t>();
        o.hit = j.at("hit").get<int64_t>();
        o.disk_blocks = j.at("disk_blocks").get<int64_t>();
      } else if (op == "write") {
        o.kind = LoggedOp::Kind::kWrite;
        o.value = j.at("len").get<int64_t>();
        o.ok = j.value("ok", true);
        for (int64_t v : j.value("preempted", std::vector<int64_t>())) {
          ASSIGN_OR_RETURN(size_t r, Find(v, where));
          o.preempted.push_back(r);
        }
      } else if (op == "prompt") {
        o.kind = LoggedOp::Kind::kPrompt;
      } else {
        o.kind = LoggedOp::Kind::kFinish;
        RETURN_IF_ERROR(ParseFinish(j, where, log_.requests[o.request]));
        log_.finish_order.push_back(o.request);
      }
    } else if (op == "enable") {
      o.kind = LoggedOp::Kind::kEnable;
      o.value = j.at("on").get<bool>() ? 1 : 0;
    } else if (op == "clear") {
      o.kind = LoggedOp::Kind::kClear;
      o.tier = j.at("tier").get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, "unknown operation '", op, "'"));
    }
    log_.ops.push_back(std::move(o));
    return absl::OkStatus();
  }

 private:
  StatusOr<size_t> Find(int64_t seq, const std::string& where) const {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "sequence ", seq,
                                                     " has no request line before it"));
    }
    return it->second;
  }

  Status ParseRequestOp(const nlohmann::json& j, const std::string& where) {
    LoggedRequest r;
    r.seq = j.at("seq").get<int64_t>();
    r.salt = j.value("salt", std::string());
    r.tokens = j.at("prompt").get<std::vector<int32_t>>();
    r.num_prompt = static_cast<int64_t>(r.tokens.size());
    r.message_starts = j.value("message_starts", std::vector<int64_t>());
    RETURN_IF_ERROR(ParseScope(j, where, r));
    for (const auto& range : j.value("retention", nlohmann::json::array())) {
      const auto v = range.get<std::vector<int64_t>>();
      if (v.size() != 4) {
        return absl::InvalidArgumentError(where + "a retention range is [begin, end, priority, duration_ms]");
      }
      r.retention.push_back({v[0], v[1], static_cast<int>(v[2]), v[3]});
    }
    if (r.num_prompt < 1) return absl::InvalidArgumentError(where + "the prompt is empty");
    by_seq_[r.seq] = log_.requests.size();
    log_.requests.push_back(std::move(r));
    return absl::OkStatus();
  }

  static Status ParseFinish(const nlohmann::json& j, const std::string& where, LoggedRequest& r) {
    const auto generated = j.at("generated").get<std::vector<int32_t>>();
    r.tokens.insert(r.tokens.end(), generated.begin(), generated.end());
    r.num_computed = j.at("computed").get<int64_t>();
    ParseServerFigures(j, r);
    r.finished = true;
    if (r.num_computed < 0 || r.num_computed > static_cast<int64_t>(r.tokens.size())) {
      return absl::InvalidArgumentError(absl::StrCat(where, "computed ", r.num_computed,
                                                     " is beyond the request's ", r.tokens.size(),
                                                     " tokens"));
    }
    return absl::OkStatus();
  }

  RequestLogFile& log_;
  absl::flat_hash_map<int64_t, size_t> by_seq_;
};

}  // namespace

StatusOr<std::vector<TraceRequest>> ReadTrace(const std::string& path) {
  std::vector<TraceRequest> out;
  RETURN_IF_ERROR(ForEachJsonLine(path, "trace", [&](const nlohmann::json& j, const std::string& where) -> Status {
    TraceRequest r;
    RETURN_IF_ERROR(ParseTraceLine(j, where, r));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

StatusOr<RequestLogFile> ReadRequestLog(const std::string& path) {
  RequestLogFile out;
  bool have_header = false;
  OpParser ops(out);
  int line = 0;
  RETURN_IF_ERROR(ForEachJsonLine(path, "request log", [&](const nlohmann::json& j, const std::string& where) -> Status {
    ++line;
    if (!have_header) {
      have_header = true;
      return ParseHeader(j, where, out);
    }
    if (out.version == 2) return ops.Parse(j, where, line);
    LoggedRequest r;
    RETURN_IF_ERROR(ParseRequest(j, where, r));
    out.finish_order.push_back(out.requests.size());
    out.requests.push_back(std::move(r));
    return absl::OkStatus();
  }));
  if (!have_header) return absl::InvalidArgumentError("the request log " + path + " is empty");
  return out;
}

}  // namespace prefixd
