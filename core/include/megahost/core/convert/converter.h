// megahost core — a converter plugin (mh.converter/1) as C++ handles: the rules it plans, the
// foreign tensors it reads and writes, and the step kinds the core applies (convert_steps).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/plugins.h"

namespace megahost::core {

struct ConvertForeign {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
};

struct ConvertRule {
  std::string param;  // without "model/"
  int32_t step = MH_CONVERT_STEP_COPY;
  std::vector<int64_t> shape;  // the megahost parameter's global shape
  std::vector<ConvertForeign> foreign;
};

// The grouped-QKV layout the QKV steps need (from the [model] table).
struct QkvGeometry {
  int64_t heads = 0, groups = 0, head_dim = 0;
};

// The steps (reshape, transpose, split, concatenation): a round trip is bit-identical.
// foreign -> megahost widens to float32 (megahost keeps float32 weights); megahost -> foreign
// narrows to each foreign tensor's dtype.
at::Tensor to_megahost(const QkvGeometry& g, const ConvertRule& r, const std::vector<at::Tensor>& foreign);
std::vector<at::Tensor> to_foreign(const QkvGeometry& g, const ConvertRule& r, const at::Tensor& mh);

class Converter {
 public:
  Converter(mh_converter* c, const mh_converter_api* api, std::string id, std::shared_ptr<void> config_tree);
  ~Converter();
  Converter(const Converter&) = delete;
  Converter& operator=(const Converter&) = delete;

  class Reader {
   public:
    Reader(mh_converter_reader* r, const mh_converter_api* api, std::string context);
    ~Reader();
    std::string recipe_toml() const;
    std::string summary() const;
    std::vector<ConvertRule> plan() const;
    at::Tensor tensor(const ConvertForeign& f) const;  // a fresh CPU tensor of f's dtype and shape
    std::vector<std::pair<std::string, std::string>> blobs() const;

   private:
    mh_converter_reader* r_;
    const mh_converter_api* api_;
    std::string context_;  // "converter 'hf'": what errors are prefixed with
  };
  class Writer {
   public:
    Writer(mh_converter_writer* w, const mh_converter_api* api, std::string context);
    ~Writer();  // aborts unless committed
    std::vector<ConvertRule> plan() const;
    void tensor(const std::string& name, const at::Tensor& t);  // CPU contiguous copy first
    std::string commit();                                       // the plugin's one-line summary

   private:
    mh_converter_writer* w_;
    const mh_converter_api* api_;
    std::string context_;
  };

  std::unique_ptr<Reader> open_reader(const std::string& dir, int64_t vocab_divisor);
  // model: the checkpoint's [model] table; blobs: what this converter's loader stored.
  std::unique_ptr<Writer> open_writer(const std::string& dir, const ConfigSection& model,
                                      const std::string& tokenizer_model, int64_t padded_vocab,
                                      const std::vector<std::pair<std::string, std::string>>& blobs);
  const std::string& id() const { return id_; }

 private:
  mh_converter* c_;
  const mh_converter_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
};

std::unique_ptr<Converter> create_converter(const PluginRegistry& reg, const std::string& id);

}  // namespace megahost::core
