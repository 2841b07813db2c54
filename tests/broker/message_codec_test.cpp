#include <gtest/gtest.h>

#include <offload/broker/message_codec.hpp>

namespace ob = offload::broker;

TEST(MessageCodec, RoundTripKeepsEveryField) {
  ob::message m;
  m.task = "spin_us";
  m.correlation_id = "c-1";
  m.reply_to = "reply.7";
  m.idempotency_key = "k:42";
  m.attempt = 3;
  m.body = std::string("1,2:3\0x", 7);  // separators and a NUL inside
  m.error = "boom";
  const ob::message back = ob::decode(ob::encode(m));
  EXPECT_EQ(back.task, m.task);
  EXPECT_EQ(back.correlation_id, m.correlation_id);
  EXPECT_EQ(back.reply_to, m.reply_to);
  EXPECT_EQ(back.idempotency_key, m.idempotency_key);
  EXPECT_EQ(back.attempt, 3u);
  EXPECT_EQ(back.body, m.body);
  EXPECT_EQ(back.error, m.error);
}

TEST(MessageCodec, MalformedInputIsRejectedWithAReason) {
  ob::message m;
  m.task = "noop";
  const std::string good = ob::encode(m);
  EXPECT_THROW(ob::decode("hello"), std::invalid_argument);
  EXPECT_THROW(ob::decode(good.substr(0, good.size() - 3)), std::invalid_argument);
  EXPECT_THROW(ob::decode(good + "x"), std::invalid_argument);
  EXPECT_THROW(ob::decode("OFL199999:abc,"), std::invalid_argument);
  ob::message unnamed;
  EXPECT_THROW(ob::decode(ob::encode(unnamed)), std::invalid_argument);
  try {
    ob::decode("OFL1x");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("task"), std::string::npos) << e.what();
  }
}
