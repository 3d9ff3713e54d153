#include "server/messages_routes.h"

#include "server/anthropic_request.h"
#include "server/anthropic_response.h"

namespace prefixd {

void HandleMessages(ServerContext& ctx, GenerationRoutes& generation, const HttpRequest& req,
                    const std::shared_ptr<Responder>& out) {
  const ServerClock::time_point received = ServerClock::now();
  auto parsed = ParseMessagesRequest(req.body, ctx.limits(), MessagesEndpoint::kCreate);
  std::string model = parsed.ok() && !parsed->model.empty() ? parsed->model : ctx.info().model_id;
  generation.Start(received, parsed, std::make_unique<AnthropicWriter>(RandomId("msg_"), std::move(model)), out);
}

HttpResponse HandleCountTokens(ServerContext& ctx, const HttpRequest& req) {
  auto parsed = ParseMessagesRequest(req.body, ctx.limits(), MessagesEndpoint::kCountTokens);
  if (!parsed.ok()) return StatusResponse(parsed.status(), ApiDialect::kAnthropic);
  if (Status s = ctx.CheckModel(parsed->model); !s.ok()) return StatusResponse(s, ApiDialect::kAnthropic);
  auto prompt = ctx.BuildPrompt(*parsed, /*touch_replies=*/false);
  if (!prompt.ok()) return StatusResponse(prompt.status(), ApiDialect::kAnthropic);
  return JsonResponse(200, nlohmann::json{{"input_tokens", prompt->tokens.size()}});
}

}  // namespace prefixd
