#pragma once
// The admin web page (src/admin/web/), compiled in by cmake/embed_web.cmake.
#include <string_view>

namespace pipehook::admin::web {
extern const std::string_view index_html, app_js, app_css;
}
