#include <offload/broker/celery/uuid.hpp>
#include <offload/detail/task_id.hpp>

namespace offload::broker::celery {

std::string uuid4() {
  return offload::detail::task_id::random().text();
}

}  // namespace offload::broker::celery
