// Boost.Asio and Boost.Beast separate compilation: their implementation is compiled once, here,
// instead of in every translation unit that uses them (BOOST_*_SEPARATE_COMPILATION is set).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
