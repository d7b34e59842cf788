#include "pipehook/store/await.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>

namespace pipehook::store {
namespace {

namespace asio = boost::asio;

// Completes an asio operation from the writer thread: the callback posts the result back to the
// executor of the waiting coroutine. A named function object, not a lambda (see STYLE.md).
struct append_initiation {
  template <class Handler, class Submit>
  void operator()(Handler handler, Submit submit) const {
    auto shared = std::make_shared<Handler>(std::move(handler));
    // Tracked: io_context::run() must not return while a commit is outstanding (graceful shutdown).
    auto ex = asio::prefer(asio::get_associated_executor(*shared), asio::execution::outstanding_work.tracked);
    // The handler is moved out and invoked (as an rvalue) on its own executor, so nothing of the
    // waiting coroutine is touched or destroyed on the writer thread.
    submit([shared, ex](append_result r) {
      asio::post(ex, [shared, r = std::move(r)]() mutable {
        Handler h = std::move(*shared);
        std::move(h)(std::move(r));
      });
    });
  }
};

}  // namespace

asio::awaitable<append_result> await_commit(std::function<void(append_callback)> submit) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(append_result)>(append_initiation{}, asio::use_awaitable,
                                                                                 std::move(submit));
}

}  // namespace pipehook::store
