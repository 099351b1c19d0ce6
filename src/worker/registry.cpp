#include "strand/registry.hpp"

#include <stdexcept>

namespace strand {
namespace {

std::string joined(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// A document as a short piece of text for a message: long ones are cut.
std::string shown(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

}  // namespace

UnknownFunction::UnknownFunction(std::string_view name, const std::vector<std::string>& registered)
    : Error("strand: no function \"" + std::string(name) +
            "\" is registered (registered: " + joined(registered) + ")") {}

namespace detail {

void throw_wrong_count(std::string_view name, std::string_view params, std::size_t expected,
                       std::size_t given) {
  throw BadArguments("strand: function \"" + std::string(name) + "\" takes " +
                     std::to_string(expected) + (expected == 1 ? " argument " : " arguments ") +
                     std::string(params) + "; the job gives " + std::to_string(given));
}

void throw_not_an_array(std::string_view name) {
  throw BadArguments("strand: the arguments of a job for function \"" + std::string(name) +
                     "\" are not a JSON array");
}

void throw_bad_argument(std::string_view name, std::size_t index, std::size_t count,
                        std::string_view type, const nlohmann::json& given,
                        std::string_view reason) {
  throw BadArguments("strand: function \"" + std::string(name) + "\": argument " +
                     std::to_string(index + 1) + " of " + std::to_string(count) + " (" +
                     std::string(type) + ") does not decode from " + shown(given) + ": " +
                     std::string(reason));
}

}  // namespace detail

void Registry::insert(std::string name, Call call, std::function<void(const nlohmann::json&)> check,
                      std::size_t arity, std::string params) {
  if (name.empty()) throw std::invalid_argument("strand: a registered function needs a name");
  if (entries_.contains(name)) {
    throw std::invalid_argument("strand: a function named \"" + name + "\" is already registered");
  }
  auto entry = std::make_shared<const Entry>(
      Entry{std::move(call), std::move(check), arity, std::move(params)});
  entries_.emplace(std::move(name), std::move(entry));
}

bool Registry::contains(std::string_view name) const {
  return entries_.find(name) != entries_.end();
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

const Registry::Entry& Registry::find(std::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) throw UnknownFunction(name, names());
  return *it->second;
}

std::string Registry::signature(std::string_view name) const {
  return std::string(name) + find(name).params;
}

nlohmann::json Registry::call(std::string_view name, const nlohmann::json& args,
                              std::stop_token stop) const {
  return find(name).call(args, std::move(stop));
}

void Registry::check(std::string_view name, const nlohmann::json& args) const {
  find(name).check(args);
}

}  // namespace strand
