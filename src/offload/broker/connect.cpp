#include <stdexcept>

#include <offload/broker/connect.hpp>
#include <offload/broker/rabbitmq_transport.hpp>
#include <offload/broker/redis_transport.hpp>

namespace offload::broker {

std::unique_ptr<transport> open_transport(const connect_options& o) {
  if (o.broker == "redis") {
    return std::make_unique<redis_transport>(
        redis_options{.where = o.where, .reliable = o.reliable, .consumer_id = o.consumer_id});
  }
  if (o.broker == "rabbitmq") {
    rabbitmq_options r;
    r.where = o.where;
    r.persistent = o.persistent;
    r.confirms = o.confirms;
    r.prefetch = static_cast<std::uint16_t>(o.prefetch);
    r.vhost = o.vhost;
    r.user = o.user;
    r.password = o.password;
    return std::make_unique<rabbitmq_transport>(std::move(r));
  }
  throw std::invalid_argument("unknown broker '" + o.broker + "' (redis or rabbitmq)");
}

}  // namespace offload::broker
