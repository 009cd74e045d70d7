// Naive single-precision matrix multiply on the GPU, checked against the CPU (scripts/gpu/sandbox-check.sh).
// Exit 0: the GPU computed the right product; 1: wrong result; 2: CUDA error (printed).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

__global__ void matmul(const float *a, const float *b, float *c, int n) {
  int row = blockIdx.y * blockDim.y + threadIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
  if (row < n && col < n) {
    float sum = 0.0f;
    for (int k = 0; k < n; ++k) sum += a[row * n + k] * b[k * n + col];
    c[row * n + col] = sum;
  }
}

#define CHECK(call)                                                                       \
  do {                                                                                    \
    cudaError_t err = (call);                                                             \
    if (err != cudaSuccess) {                                                             \
      std::printf("{\"ok\": false, \"error\": \"%s: %s\"}\n", #call, cudaGetErrorString(err)); \
      return 2;                                                                           \
    }                                                                                     \
  } while (0)

int main() {
  const int n = 512;
  std::vector<float> a(n * n), b(n * n), c(n * n), ref(n * n, 0.0f);
  for (int i = 0; i < n * n; ++i) { a[i] = (i % 17) / 17.0f; b[i] = (i % 13) / 13.0f; }
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j) ref[i * n + j] += a[i * n + k] * b[k * n + j];
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  float *da, *db, *dc;
  size_t bytes = sizeof(float) * n * n;
  CHECK(cudaMalloc(&da, bytes)); CHECK(cudaMalloc(&db, bytes)); CHECK(cudaMalloc(&dc, bytes));
  CHECK(cudaMemcpy(da, a.data(), bytes, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b.data(), bytes, cudaMemcpyHostToDevice));
  dim3 threads(16, 16), blocks((n + 15) / 16, (n + 15) / 16);
  matmul<<<blocks, threads>>>(da, db, dc, n);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(c.data(), dc, bytes, cudaMemcpyDeviceToHost));
  double worst = 0.0;
  for (int i = 0; i < n * n; ++i) worst = std::fmax(worst, std::fabs(c[i] - ref[i]) / (std::fabs(ref[i]) + 1.0));
  std::printf("{\"ok\": %s, \"device\": \"%s\", \"cc\": \"%d.%d\", \"n\": %d, \"max_rel_err\": %g}\n",
              worst < 1e-3 ? "true" : "false", prop.name, prop.major, prop.minor, n, worst);
  return worst < 1e-3 ? 0 : 1;
}
