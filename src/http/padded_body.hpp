#pragma once
// A Beast body type like string_body whose storage always keeps body_padding spare bytes after the
// data, so the body can be handed to simdjson without a copy (a string_body's capacity may equal
// its size).

#include "pipehook/http/types.hpp"

#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional/optional.hpp>

#include <algorithm>
#include <string>

namespace pipehook::http::detail {

struct padded_body {
  using value_type = std::string;

  static std::uint64_t size(const value_type& v) { return v.size(); }

  class reader {
   public:
    template <bool IsRequest, class Fields>
    reader(boost::beast::http::header<IsRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      ec = {};
      if (length) {
        if (*length > body_.max_size() - body_padding) {
          ec = boost::beast::http::error::buffer_overflow;
          return;
        }
        body_.reserve(static_cast<std::size_t>(*length) + body_padding);
      }
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      const std::size_t extra = boost::beast::buffer_bytes(buffers);
      const std::size_t size = body_.size();
      if (extra > body_.max_size() - size - body_padding) {
        ec = boost::beast::http::error::buffer_overflow;
        return 0;
      }
      if (body_.capacity() < size + extra + body_padding)
        body_.reserve(std::max(size + extra + body_padding, body_.capacity() * 2));
      body_.resize(size + extra);
      ec = {};
      char* dest = body_.data() + size;
      for (auto b : boost::beast::buffers_range_ref(buffers)) {
        std::copy_n(static_cast<const char*>(b.data()), b.size(), dest);
        dest += b.size();
      }
      return extra;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

}  // namespace pipehook::http::detail
