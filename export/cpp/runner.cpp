// isnas-fast C++ runner (DESIGN §1 step 6: deploy without the search code).
//
// Loads a TorchInductor AOT package (.pt2) written by
// isnas_fast.export.aoti.to_pt2 — the trained network with its input code z
// baked in, so the compiled program takes no input — runs it once and writes
// the image:
//   * binary PPM (P6) for 3 channels, binary PGM (P5) for 1 channel,
//     8 bits, values clipped to [0, 1] and rounded (as isnas_fast.save_image);
//   * optionally the raw float32 output (1, C, H, W) as a NumPy .npy file for
//     exact comparison with Python.
//
// Usage: isnas_fast_runner MODEL.pt2 OUT.(ppm|pgm|pnm) [OUT.npy]
// Exit codes: 0 ok, 2 bad input (message on stderr, one line), 1 other error.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string lower_suffix(const std::string& path) {
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string s = path.substr(dot);
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Write to PATH.tmp, then rename: readers never see a partial file.
void write_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("cannot write " + path);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw InputError("cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError("cannot write " + path);
  }
}

// image: (1, C, H, W) float32, contiguous, CPU.
void write_pnm(const at::Tensor& image, const std::string& path) {
  const int64_t c = image.size(1), h = image.size(2), w = image.size(3);
  const std::string suffix = lower_suffix(path);
  if ((suffix == ".ppm" && c != 3) || (suffix == ".pgm" && c != 1)) {
    throw InputError("the model outputs " + std::to_string(c) + " channel(s); write it as " +
                     (c == 3 ? std::string(".ppm") : std::string(".pgm")) + " or .pnm, not " + suffix);
  }
  if (c != 1 && c != 3) throw InputError("cannot write a " + std::to_string(c) + "-channel image as PPM/PGM");
  std::ostringstream os;
  os << (c == 3 ? "P6" : "P5") << "\n" << w << " " << h << "\n255\n";
  std::string bytes = os.str();
  const float* data = image.data_ptr<float>();
  const int64_t plane = h * w;
  bytes.reserve(bytes.size() + static_cast<size_t>(c * plane));
  for (int64_t i = 0; i < plane; ++i) {
    for (int64_t k = 0; k < c; ++k) {  // planar CHW -> interleaved HWC
      float v = data[k * plane + i];
      v = std::isnan(v) ? 0.f : std::min(1.f, std::max(0.f, v));
      bytes.push_back(static_cast<char>(static_cast<uint8_t>(std::nearbyint(v * 255.f))));
    }
  }
  write_atomic(path, bytes);
}

// NumPy .npy format version 1.0, little-endian float32, C order.
void write_npy(const at::Tensor& image, const std::string& path) {
  std::ostringstream shape;
  shape << "(";
  for (int64_t d = 0; d < image.dim(); ++d) shape << image.size(d) << (image.dim() == 1 ? "," : (d + 1 < image.dim() ? ", " : ""));
  shape << ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape.str() + ", }";
  const size_t preamble = 10;  // magic (6) + version (2) + header length (2)
  const size_t total = ((preamble + header.size() + 1 + 63) / 64) * 64;
  header.append(total - preamble - header.size() - 1, ' ');
  header.push_back('\n');
  std::string bytes("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  bytes.push_back(static_cast<char>(len & 0xff));
  bytes.push_back(static_cast<char>(len >> 8));
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(image.data_ptr<float>()), static_cast<size_t>(image.numel()) * sizeof(float));
  write_atomic(path, bytes);
}

bool readable(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt2 OUT.(ppm|pgm|pnm) [OUT.npy]\n";
    return 2;
  }
  const std::string model_path = argv[1], image_path = argv[2];
  const std::string npy_path = argc == 4 ? argv[3] : "";
  try {
    if (!readable(model_path)) throw InputError("model file not found or unreadable: " + model_path);
    const std::string suffix = lower_suffix(image_path);
    if (suffix != ".ppm" && suffix != ".pgm" && suffix != ".pnm")
      throw InputError("output image must end in .ppm, .pgm or .pnm, got " + image_path);
    if (!npy_path.empty() && lower_suffix(npy_path) != ".npy")
      throw InputError("raw output must end in .npy, got " + npy_path);

    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    try {
      loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(model_path);
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      throw InputError("cannot load " + model_path + " as a TorchInductor package: " + why);
    }
    std::vector<at::Tensor> outputs = loader->run({});  // z is baked into the package
    if (outputs.size() != 1 || outputs[0].dim() != 4 || outputs[0].size(0) != 1)
      throw InputError("the package did not produce one (1, C, H, W) image");
    at::Tensor image = outputs[0].to(at::kCPU, at::kFloat).contiguous();
    write_pnm(image, image_path);
    if (!npy_path.empty()) write_npy(image, npy_path);
    std::cout << "wrote " << image_path << " (" << image.size(1) << "x" << image.size(2) << "x" << image.size(3)
              << ")" << (npy_path.empty() ? "" : " and " + npy_path) << "\n";
    return 0;
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::string why = e.what();
    std::cerr << "error: " << why.substr(0, why.find('\n')) << "\n";
    return 1;
  }
}
