#include "strand/serialize.hpp"

#include "strand/registry.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <typeinfo>

namespace strand {

std::string_view to_string(Format format) noexcept {
  switch (format) {
    case Format::json:
      return "json";
    case Format::msgpack:
      return "msgpack";
  }
  return "unknown";
}

Format parse_format(std::string_view name) {
  if (name == "json") return Format::json;
  if (name == "msgpack") return Format::msgpack;
  throw std::invalid_argument("strand: unknown serialization format \"" + std::string(name) +
                              "\"; valid formats are: json, msgpack");
}

std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  if (status != 0 || !out) return type.name();
  // As people write them: std::string, not its full template; no inline-namespace tags.
  std::string name = out.get();
  const auto replace_all = [&name](std::string_view from, std::string_view to) {
    for (auto at = name.find(from); at != std::string::npos; at = name.find(from, at + to.size())) {
      name.replace(at, from.size(), to);
    }
  };
  replace_all("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
              "std::string");
  replace_all("std::__cxx11::", "std::");
  return name;
}

DecodeError::DecodeError(std::string_view type, Format format, std::string_view reason)
    : Error("strand: cannot decode a value of type " + std::string(type) + " from a " +
            std::string(to_string(format)) + " payload: " + std::string(reason)) {}

namespace detail {

std::string encode_json(const nlohmann::json& value, Format format) {
  if (format == Format::json) return value.dump();
  std::string out;
  nlohmann::json::to_msgpack(value, out);
  return out;
}

nlohmann::json decode_json(std::string_view bytes, Format format, std::string_view type) {
  try {
    if (format == Format::json) return nlohmann::json::parse(bytes);
    return nlohmann::json::from_msgpack(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw DecodeError(type, format, e.what());
  }
}

}  // namespace detail

void to_json(nlohmann::json& out, const ErrorInfo& info) {
  out = nlohmann::json{{"type", info.type}, {"message", info.message}};
}

void from_json(const nlohmann::json& in, ErrorInfo& info) {
  in.at("type").get_to(info.type);
  in.at("message").get_to(info.message);
}

ErrorInfo error_info(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const RemoteError& e) {
    return {e.type_name(), e.message()};
  } catch (const std::exception& e) {
    return {type_name(typeid(e)), e.what()};
  } catch (...) {
    return {"unknown exception", "an exception that is not a std::exception"};
  }
}

namespace {

template <class E>
std::exception_ptr make(const std::string& message) {
  return std::make_exception_ptr(E(message));
}

}  // namespace

std::exception_ptr to_exception(const ErrorInfo& info) {
  using Factory = std::exception_ptr (*)(const std::string&);
  struct Known {
    std::string_view name;
    Factory make;
  };
  // The standard exceptions that carry a message, and strand's own errors, come back as
  // themselves; their what() is the message, unchanged.
  static constexpr Known known[] = {
      {"std::runtime_error", &make<std::runtime_error>},
      {"std::logic_error", &make<std::logic_error>},
      {"std::invalid_argument", &make<std::invalid_argument>},
      {"std::domain_error", &make<std::domain_error>},
      {"std::length_error", &make<std::length_error>},
      {"std::out_of_range", &make<std::out_of_range>},
      {"std::range_error", &make<std::range_error>},
      {"std::overflow_error", &make<std::overflow_error>},
      {"std::underflow_error", &make<std::underflow_error>},
      {"strand::Error", &make<Error>},
      {"strand::Timeout", &make<Timeout>},
      {"strand::Cancelled", &make<Cancelled>},
      {"strand::NotReady", &make<NotReady>},
      {"strand::UnknownFunction", &make<UnknownFunction>},
      {"strand::BadArguments", &make<BadArguments>},
  };
  for (const auto& k : known) {
    if (k.name == info.type) return k.make(info.message);
  }
  if (info.type == "std::bad_alloc") return std::make_exception_ptr(std::bad_alloc());
  return std::make_exception_ptr(RemoteError(info.type, info.message));
}

}  // namespace strand
