#include "pipehook/pipedrive/vocabulary.hpp"

namespace pipehook::pipedrive {

bool valid_event_action(std::string_view a) {
  for (std::string_view v : {"create", "change", "delete", "*"})
    if (a == v) return true;
  return false;
}

bool valid_event_object(std::string_view o) {
  for (std::string_view v : {"activity", "deal", "lead", "note", "organization", "person", "pipeline", "product", "stage",
                             "user", "*"})
    if (o == v) return true;
  return false;
}

}  // namespace pipehook::pipedrive
