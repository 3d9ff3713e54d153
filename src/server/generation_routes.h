// GenerationRoutes: POST /v1/completions and /v1/chat/completions, and the generation of
// Anthropic's /v1/messages (messages_routes.h parses it and calls Start). A request is parsed,
// rendered and tokenized on the worker thread the transport calls it on, then submitted;
// from then on the engine thread drives it: each event goes through the request's Job
// (under the job's own lock, never waiting on anything else) and out as an SSE chunk the
// moment it is produced (StreamWriter), or into the whole answer when the last one comes.
// The transport reports a client that hangs up; its request is cancelled then.
//
// Thread safety: Handle from any thread; CancelAll and num_active from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "server/http_message.h"
#include "server/openai_request.h"
#include "server/response_writer.h"
#include "server/server_context.h"

namespace prefixd {

struct GenerationJob;

class GenerationRoutes {
 public:
  explicit GenerationRoutes(ServerContext* ctx) : ctx_(ctx) {}

  void Handle(const HttpRequest& req, const std::shared_ptr<Responder>& out, ApiKind kind);
  // Renders, tokenizes and submits a parsed request (or answers its parse error), answering
  // through `writer` in its dialect. Tool calls are parsed out when the request has tools
  // and tool_choice auto, in the syntax of the model's chat template.
  void Start(ServerClock::time_point received, StatusOr<OpenAiRequest>& parsed,
             std::unique_ptr<ResponseWriter> writer, const std::shared_ptr<Responder>& out);
  // Cancels every running request (shutdown): each ends with finish_reason "abort".
  void CancelAll();
  // Requests submitted and not answered yet.
  int num_active() const { return num_active_.load(); }

 private:
  friend struct GenerationJob;
  void Forget(GenerationJob* job);

  ServerContext* ctx_;
  std::atomic<int> num_active_{0};
  std::mutex mu_;
  std::unordered_set<GenerationJob*> jobs_;  // guarded by mu_: the running ones
};

}  // namespace prefixd
