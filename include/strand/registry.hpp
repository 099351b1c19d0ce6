// strand/registry.hpp — functions by name: the only code a worker will run for a job.
//
//   strand::Registry registry;
//   registry.add("resize", [](std::string path, int width) { return resize(path, width); });
//   registry.add("crawl", [](std::stop_token stop, std::string url) { ... });  // cancellable
//   nlohmann::json result = registry.call("resize", {"a.png", 640});
//
// A job read from a store names a function and carries its arguments as documents; the registry
// decodes each argument into the parameter's type and encodes the result. Nothing read from a store
// is ever executed except a function registered here: a job cannot bring code with it.
//
// A job that names no registered function, gives the wrong number of arguments, or an argument that
// does not decode into its parameter's type, fails with UnknownFunction or BadArguments, whose
// message names the function and the argument; such a job is not retried.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/errors.hpp"
#include "strand/serialize.hpp"

namespace strand {

// A job names a function that is not registered:
// `strand: no function "resise" is registered (registered: crawl, resize)`.
class UnknownFunction : public Error {
 public:
  using Error::Error;
  UnknownFunction(std::string_view name, const std::vector<std::string>& registered);
};

// A job's arguments do not fit the function's parameters, e.g.
// `strand: function "resize" takes 2 arguments (std::string, int); the job gives 3` or
// `strand: function "resize": argument 2 of 2 (int) does not decode from "wide": ...`.
class BadArguments : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class Sig>
struct signature_of;
template <class R, class... A>
struct signature_of<R(A...)> {
  using result = R;
  using params = std::tuple<A...>;
};
template <class R, class... A>
struct signature_of<R (*)(A...)> : signature_of<R(A...)> {};
template <class R, class... A>
struct signature_of<R (*)(A...) noexcept> : signature_of<R(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) const> : signature_of<R(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) const noexcept> : signature_of<R(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...)> : signature_of<R(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) noexcept> : signature_of<R(A...)> {};

// A callable whose parameter types can be known: a function, a function pointer, or an object
// with one non-template operator().
template <class F>
concept has_fixed_signature = std::is_function_v<std::remove_pointer_t<F>> || requires {
  &F::operator();
};

template <class F>
struct callable_signature : signature_of<decltype(&F::operator())> {};
template <class R, class... A>
struct callable_signature<R (*)(A...)> : signature_of<R(A...)> {};
template <class R, class... A>
struct callable_signature<R (*)(A...) noexcept> : signature_of<R(A...)> {};

template <class F>
using signature_t = callable_signature<F>;

template <class Params>
struct takes_stop_token : std::false_type {};
template <class First, class... Rest>
struct takes_stop_token<std::tuple<First, Rest...>>
    : std::is_same<std::remove_cvref_t<First>, std::stop_token> {};

template <class Tuple>
struct drop_first;
template <class First, class... Rest>
struct drop_first<std::tuple<First, Rest...>> {
  using type = std::tuple<Rest...>;
};

template <class Params>
using job_params_t =
    typename std::conditional_t<takes_stop_token<Params>::value, drop_first<Params>,
                                std::type_identity<Params>>::type;

template <class Tuple>
struct all_serializable;
template <class... A>
struct all_serializable<std::tuple<A...>>
    : std::bool_constant<(Serializable<std::remove_cvref_t<A>> && ...)> {};

// "(std::string, int)"
template <class... A>
std::string parameter_list(std::tuple<A...>*) {
  std::string out = "(";
  ((out += (out.size() > 1 ? ", " : "") + type_name<std::remove_cvref_t<A>>()), ...);
  return out + ")";
}

[[noreturn]] void throw_wrong_count(std::string_view name, std::string_view params,
                                    std::size_t expected, std::size_t given);
[[noreturn]] void throw_not_an_array(std::string_view name);
[[noreturn]] void throw_bad_argument(std::string_view name, std::size_t index, std::size_t count,
                                     std::string_view type, const nlohmann::json& given,
                                     std::string_view reason);

template <class T>
std::remove_cvref_t<T> decode_argument(std::string_view name, const nlohmann::json& args,
                                       std::size_t index) {
  using V = std::remove_cvref_t<T>;
  try {
    return args[index].template get<V>();
  } catch (const nlohmann::json::exception& e) {
    throw_bad_argument(name, index, args.size(), type_name<V>(), args[index], e.what());
  }
}

}  // namespace detail

class Registry {
 public:
  // How a registered function is called: arguments as documents in, the result as a document out
  // (null for a function returning void).
  using Call = std::function<nlohmann::json(const nlohmann::json& args, std::stop_token stop)>;

  // Records `f` under `name`. `f` may take a std::stop_token first (it is requested when the job
  // is cancelled, times out or its lease is lost); its other parameters and its result must be
  // serializable. std::invalid_argument for an empty name or one already registered.
  template <class F>
  Registry& add(std::string name, F f) {
    static_assert(detail::has_fixed_signature<F>,
                  "strand: Registry::add needs a function with fixed parameter types (a generic "
                  "lambda's `auto` parameters cannot be decoded from a job)");
    if constexpr (detail::has_fixed_signature<F>) {
      using sig = detail::signature_t<F>;
      using R = typename sig::result;
      using params = detail::job_params_t<typename sig::params>;
      static_assert(std::is_void_v<R> || Serializable<std::remove_cvref_t<R>>,
                    "strand: a registered function's result is kept in a store, so it must be "
                    "serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");
      static_assert(detail::all_serializable<params>::value,
                    "strand: a registered function's parameters are decoded from a job, so each "
                    "must be serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");
      std::string params_text = detail::parameter_list(static_cast<params*>(nullptr));
      Call call = [f = std::move(f), name, params_text](const nlohmann::json& args,
                                                        std::stop_token stop) {
        return invoke<R>(f, name, params_text, args, std::move(stop),
                         static_cast<typename sig::params*>(nullptr));
      };
      constexpr std::size_t arity = std::tuple_size_v<params>;
      auto check = [name, params_text](const nlohmann::json& args) {
        check_arguments(name, params_text, args, static_cast<params*>(nullptr));
      };
      insert(std::move(name), std::move(call), std::move(check), arity, std::move(params_text));
    }
    return *this;
  }

  [[nodiscard]] bool contains(std::string_view name) const;
  // The registered names, sorted.
  [[nodiscard]] std::vector<std::string> names() const;
  // How `name` is called, e.g. "resize(std::string, int)". UnknownFunction if it is not registered.
  [[nodiscard]] std::string signature(std::string_view name) const;

  // Calls `name` with `args` (a JSON array, one document per argument) and returns its result as
  // a document. UnknownFunction, BadArguments, or whatever the function throws.
  nlohmann::json call(std::string_view name, const nlohmann::json& args,
                      std::stop_token stop = {}) const;
  // Throws what call() would throw for a missing function or bad arguments, without calling it
  // (a worker checks a job before forking a child for it).
  void check(std::string_view name, const nlohmann::json& args) const;

 private:
  struct Entry {
    Call call;
    std::function<void(const nlohmann::json&)> check;
    std::size_t arity = 0;
    std::string params;
  };

  void insert(std::string name, Call call, std::function<void(const nlohmann::json&)> check,
              std::size_t arity, std::string params);
  [[nodiscard]] const Entry& find(std::string_view name) const;

  template <class... A>
  static void check_arguments(std::string_view name, std::string_view params,
                              const nlohmann::json& args, std::tuple<A...>*) {
    if (!args.is_array()) detail::throw_not_an_array(name);
    if (args.size() != sizeof...(A)) {
      detail::throw_wrong_count(name, params, sizeof...(A), args.size());
    }
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((void)detail::decode_argument<A>(name, args, I), ...);
    }
    (std::index_sequence_for<A...>{});
  }

  template <class R, class F, class... A>
  static nlohmann::json invoke(const F& f, std::string_view name, std::string_view params,
                               const nlohmann::json& args, std::stop_token stop,
                               std::tuple<A...>*) {
    if constexpr (detail::takes_stop_token<std::tuple<A...>>::value) {
      return invoke_decoded<R>(
          [&](auto&&... decoded) -> decltype(auto) {
            return std::invoke(f, std::move(stop), std::forward<decltype(decoded)>(decoded)...);
          },
          name, params, args,
          static_cast<typename detail::drop_first<std::tuple<A...>>::type*>(nullptr));
    } else {
      return invoke_decoded<R>(
          [&](auto&&... decoded) -> decltype(auto) {
            return std::invoke(f, std::forward<decltype(decoded)>(decoded)...);
          },
          name, params, args, static_cast<std::tuple<A...>*>(nullptr));
    }
  }

  template <class R, class G, class... A>
  static nlohmann::json invoke_decoded(G&& g, std::string_view name, std::string_view params,
                                       const nlohmann::json& args, std::tuple<A...>*) {
    if (!args.is_array()) detail::throw_not_an_array(name);
    if (args.size() != sizeof...(A)) {
      detail::throw_wrong_count(name, params, sizeof...(A), args.size());
    }
    return [&]<std::size_t... I>(std::index_sequence<I...>)->nlohmann::json {
      std::tuple<std::remove_cvref_t<A>...> decoded{detail::decode_argument<A>(name, args, I)...};
      if constexpr (std::is_void_v<R>) {
        g(std::get<I>(std::move(decoded))...);
        return nullptr;
      } else {
        return to_document(g(std::get<I>(std::move(decoded))...));
      }
    }
    (std::index_sequence_for<A...>{});
  }

  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> entries_;
};

}  // namespace strand
