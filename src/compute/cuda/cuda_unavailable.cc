// Built instead of the CUDA backend when nvcc was not found at configure time.
#include "compute/backend.h"

namespace prefixd {

bool CudaBackendAvailable(std::string* why) {
  if (why) {
    *why = "this prefixd was built without CUDA (nvcc was not found when it was configured); "
           "install the CUDA toolkit and rebuild, or use --backend cpu";
  }
  return false;
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model&, const CudaBackendOptions&) {
  std::string why;
  CudaBackendAvailable(&why);
  return absl::FailedPreconditionError(why);
}

}  // namespace prefixd
