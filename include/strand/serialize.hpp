// strand/serialize.hpp — the one serialization point: what crosses a process or store boundary.
//
// A type crosses if nlohmann::json knows it: the standard types it already handles (numbers,
// strings, bool, containers, std::optional, std::pair/tuple, ...) and any type with
// `to_json`/`from_json` found by argument-dependent lookup (or NLOHMANN_DEFINE_TYPE_* macros):
//
//   struct Point { int x, y; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Point, x, y)
//
//   std::string bytes = strand::encode(Point{1, 2}, strand::Format::msgpack);
//   Point p = strand::decode<Point>(bytes, strand::Format::msgpack);
//
// Two formats: JSON text (readable, what `strand jobs show` prints) and MessagePack (compact and
// faster, the default for process results). A type that cannot cross is refused at compile time by
// the `Serializable` concept with a message saying what to add.
//
// Exceptions cross as (type name, message): `ErrorInfo`. On the other side the standard exception
// types come back as themselves (std::runtime_error, std::invalid_argument, std::out_of_range,
// ...), and so do strand's own errors; anything else becomes a strand::RemoteError keeping the type
// name.
#pragma once

#include <concepts>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>

#include "strand/errors.hpp"

// std::optional crosses as its value or null (nlohmann::json 3.11.2 has no serializer for it).
template <class T>
struct nlohmann::adl_serializer<std::optional<T>> {
  static void to_json(nlohmann::json& out, const std::optional<T>& value) {
    if (value) {
      out = *value;
    } else {
      out = nullptr;
    }
  }
  static void from_json(const nlohmann::json& in, std::optional<T>& value) {
    if (in.is_null()) {
      value.reset();
    } else {
      value = in.template get<T>();
    }
  }
};

namespace strand {

enum class Format : std::uint8_t {
  json,     // UTF-8 JSON text
  msgpack,  // MessagePack, through nlohmann::json
};

// "json", "msgpack".
[[nodiscard]] std::string_view to_string(Format format) noexcept;
// The format named `name` ("json", "msgpack"); std::invalid_argument naming the valid ones.
[[nodiscard]] Format parse_format(std::string_view name);

// A type nlohmann::json can write and read back.
template <class T>
concept Serializable = requires(const T& value, const nlohmann::json& in) {
  nlohmann::json(value);
  { in.template get<T>() } -> std::same_as<T>;
};

// The demangled name of a type, as error messages print it ("std::vector<int, ...>").
[[nodiscard]] std::string type_name(const std::type_info& type);
template <class T>
[[nodiscard]] std::string type_name() {
  return type_name(typeid(T));
}

// A payload that could not be turned back into the type asked for.
class DecodeError : public Error {
 public:
  // "strand: cannot decode a value of type <type> from a <format> payload: <reason>"
  DecodeError(std::string_view type, Format format, std::string_view reason);
};

namespace detail {
[[nodiscard]] std::string encode_json(const nlohmann::json& value, Format format);
// Throws DecodeError naming `type` if the bytes are not a well-formed document of `format`.
[[nodiscard]] nlohmann::json decode_json(std::string_view bytes, Format format,
                                         std::string_view type);

template <class T>
constexpr bool serializable_v = Serializable<T>;

template <class T>
void require_serializable() {
  static_assert(serializable_v<T>,
                "strand: this type cannot cross a process or store boundary: give it nlohmann "
                "to_json/from_json functions (or NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE), see "
                "strand/serialize.hpp");
}
}  // namespace detail

// The value as a JSON document (nlohmann::json), the tree both formats are written from.
template <class T>
[[nodiscard]] nlohmann::json to_document(const T& value) {
  detail::require_serializable<T>();
  if constexpr (detail::serializable_v<T>) {
    return nlohmann::json(value);
  } else {
    return {};
  }
}

// A document back into a T. Throws DecodeError naming T if the document does not fit.
template <class T>
[[nodiscard]] T from_document(const nlohmann::json& document, Format format = Format::json) {
  detail::require_serializable<T>();
  if constexpr (detail::serializable_v<T>) {
    try {
      return document.template get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw DecodeError(type_name<T>(), format, e.what());
    }
  } else {
    throw DecodeError(type_name<T>(), format, "not serializable");
  }
}

template <class T>
[[nodiscard]] std::string encode(const T& value, Format format = Format::msgpack) {
  return detail::encode_json(to_document(value), format);
}

template <class T>
[[nodiscard]] T decode(std::string_view bytes, Format format = Format::msgpack) {
  detail::require_serializable<T>();
  return from_document<T>(detail::decode_json(bytes, format, type_name<T>()), format);
}

// An exception reduced to what can cross a boundary.
struct ErrorInfo {
  std::string type;     // demangled type name, e.g. "std::out_of_range"
  std::string message;  // what()
  friend bool operator==(const ErrorInfo&, const ErrorInfo&) = default;
};
void to_json(nlohmann::json& out, const ErrorInfo& info);
void from_json(const nlohmann::json& in, ErrorInfo& info);

// The type name and message of a caught exception. A RemoteError keeps the name it arrived with;
// something that is not a std::exception reads as type "unknown exception".
[[nodiscard]] ErrorInfo error_info(const std::exception_ptr& error);
// The exception to throw on this side: the standard and strand types as themselves, anything else
// as RemoteError(type, message).
[[nodiscard]] std::exception_ptr to_exception(const ErrorInfo& info);

}  // namespace strand
