// Fuzz target of the Celery decoders: any bytes, read as a Redis envelope, as an AMQP body and as
// a result document, must decode or be refused with the decoder's own error; whatever decodes
// must encode again and decode to the same message. Anything else (another exception, a crash, a
// sanitizer report) is a bug.
//   libFuzzer (scripts/lib/fuzz_celery.sh): clang++ -fsanitize=fuzzer,address,undefined
//   replay (CTest, every build): celery_fuzz_replay <files or folders>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <offload/broker/celery/iso8601.hpp>
#include <offload/broker/celery/result_document.hpp>
#include <offload/broker/celery/task_message.hpp>

using namespace offload::broker::celery;

namespace {

void check(bool ok) {
  if (!ok)
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const task_message m = decode_redis_envelope(text);
    if (m.protocol == 2) {
      const task_message again = decode_redis_envelope(encode_redis_envelope(m));
      check(again.id == m.id && again.task == m.task && again.args == m.args &&
            again.kwargs == m.kwargs);
    }
  } catch (const malformed_message&) {
  }
  try {
    amqp_delivery d;
    d.content_type = "application/json";
    d.headers = {{"task", "tasks.add"}, {"id", "fuzz"}};
    const task_message m = decode_amqp(d, text);
    check(decode_amqp(d, encode_body(m)).args == m.args);
  } catch (const malformed_message&) {
  }
  try {
    const result_document r = decode_result(text);
    check(decode_result(encode_redis_result(r)).task_id == r.task_id);
    check(decode_result(encode_rpc_result(r)).status == r.status);
  } catch (const std::invalid_argument&) {
  }
  try {
    const wall_time t = parse_iso8601(text);
    check(parse_iso8601(format_iso8601_utc(t)) == t);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
