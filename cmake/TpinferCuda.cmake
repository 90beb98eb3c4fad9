# The CUDA backend (src/backend/cuda): TPINFER_CUDA=AUTO|ON|OFF.
#   AUTO  builds it when a working CUDA compiler, the CUDA toolkit and NCCL are found;
#   ON    fails configuration when one of them is missing;
#   OFF   never builds it.
# When built, tpinfer_backend carries TPINFER_HAVE_CUDA=1 and the backend's objects,
# and links cudart, cuBLASLt and NCCL. Included from the top-level CMakeLists.txt after
# tpinfer_backend is defined; sets TPINFER_HAVE_CUDA (ON/OFF) for tests/.
set(TPINFER_CUDA AUTO CACHE STRING
    "Build the CUDA backend: AUTO (when CUDA and NCCL are found), ON (required), OFF")
set_property(CACHE TPINFER_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${TPINFER_CUDA}" _tpinfer_cuda_mode)
if(NOT _tpinfer_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "TPINFER_CUDA must be AUTO, ON or OFF (got '${TPINFER_CUDA}')")
endif()
set(TPINFER_HAVE_CUDA OFF)

# In AUTO mode a missing piece turns the backend off with a status line; in ON
# mode it is an error.
macro(_tpinfer_cuda_missing what)
  if(_tpinfer_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "TPINFER_CUDA=ON but ${what}")
  endif()
  message(STATUS "CUDA backend: off (${what})")
  return()
endmacro()

if(_tpinfer_cuda_mode STREQUAL "OFF")
  message(STATUS "CUDA backend: off (TPINFER_CUDA=OFF)")
  return()
endif()

# Hopper only by default (H100/H200): one architecture keeps compile time down.
# CMake turns "90a" into -gencode arch=compute_90a,code=[compute_90a,sm_90a].
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()
# nvcc is often not on PATH; look where the toolkit usually lives. CUDACXX is
# what check_language's trial configuration honours.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(TPINFER_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH
               PATH_SUFFIXES bin PATHS /usr/local/cuda/bin)
  if(TPINFER_NVCC)
    set(ENV{CUDACXX} "${TPINFER_NVCC}")
  endif()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _tpinfer_cuda_missing("no working CUDA compiler was found")
endif()
enable_language(CUDA)
# CMake 3.25 knows no C++20 flag for nvcc; the kernels need only C++17.
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

find_package(CUDAToolkit)
if(NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cudart OR NOT TARGET CUDA::cublasLt)
  _tpinfer_cuda_missing("the CUDA toolkit (cudart, cuBLASLt) was not found")
endif()

# NCCL: NCCL_ROOT / NCCL_HOME, the system paths, then the CUDA toolkit's own
# folders (some installs put nccl.h and libnccl.so beside cudart).
set(_tpinfer_nccl_hints $ENV{NCCL_ROOT} $ENV{NCCL_HOME} ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT}
    ${CUDAToolkit_TARGET_DIR})
find_path(TPINFER_NCCL_INCLUDE_DIR nccl.h HINTS ${_tpinfer_nccl_hints} PATH_SUFFIXES include
          PATHS ${CUDAToolkit_INCLUDE_DIRS})
find_library(TPINFER_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_tpinfer_nccl_hints}
             PATH_SUFFIXES lib lib64 PATHS ${CUDAToolkit_LIBRARY_DIR})
if(NOT TPINFER_NCCL_INCLUDE_DIR OR NOT TPINFER_NCCL_LIBRARY)
  _tpinfer_cuda_missing("NCCL (nccl.h, libnccl) was not found; set NCCL_ROOT")
endif()
add_library(tpinfer_nccl UNKNOWN IMPORTED)
set_target_properties(tpinfer_nccl PROPERTIES IMPORTED_LOCATION "${TPINFER_NCCL_LIBRARY}"
                      INTERFACE_INCLUDE_DIRECTORIES "${TPINFER_NCCL_INCLUDE_DIR}")

# An object library: its objects go into libtpinfer_backend.a, its link
# requirements (cudart, cuBLASLt, NCCL) to everything that links tpinfer_backend.
file(GLOB TPINFER_CUDA_SOURCES CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cpp ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cu)
add_library(tpinfer_cuda OBJECT ${TPINFER_CUDA_SOURCES})
target_include_directories(tpinfer_cuda PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(tpinfer_cuda PUBLIC CUDA::cudart CUDA::cublasLt tpinfer_nccl tpinfer_dist
                      nlohmann_json::nlohmann_json)
target_compile_definitions(tpinfer_cuda PRIVATE OMPI_SKIP_MPICXX=1)
# The cuda backend is part of layer backend, and may use dist besides: its
# NCCL and IPC set-up talk MPI under the watchdog (the only MPI outside dist).
file(GLOB _tpinfer_cuda_headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.hpp
     ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cuh)
get_property(_tpinfer_backend_uses GLOBAL PROPERTY TPINFER_LAYER_USES_backend)
tpinfer_check_layer(tpinfer_cuda backend "${_tpinfer_backend_uses};dist" "hdf5.h"
                    ${TPINFER_CUDA_SOURCES} ${_tpinfer_cuda_headers})
# -Wall -Wextra reach nvcc through -forward-unknown-to-host-compiler (host code);
# device code: no fast-math, so expf/sincosf stay the precise versions.
target_compile_options(tpinfer_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xptxas=-warn-spills>)
set_target_properties(tpinfer_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON
                      CUDA_SEPARABLE_COMPILATION OFF)

target_link_libraries(tpinfer_backend PUBLIC tpinfer_cuda)
# tpinfer_backend now holds CUDA objects, and existed before CUDA was enabled:
# give it the CUDA properties its own creation could not pick up (it would
# otherwise ask for the C++20 dialect of nvcc, which CMake 3.25 does not know).
set_target_properties(tpinfer_backend PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                      CUDA_STANDARD 17)
target_compile_definitions(tpinfer_backend PUBLIC TPINFER_HAVE_CUDA=1)
set(TPINFER_HAVE_CUDA ON)
message(STATUS "CUDA backend: on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${TPINFER_NCCL_LIBRARY})")
