# One static library per layer (src/<layer>/), linking exactly the layers it
# may use (docs/ARCHITECTURE.md, "Layers"). Every header is included by its
# path below src/ ("weights/weight_store.hpp"), so the first path component
# names the layer; a build-time check (cmake/CheckLayerIncludes.cmake) fails
# the build when a file includes a header of a layer its library does not
# declare, or a system header its layer must not know (FORBID).
set(TPINFER_LAYERS base text weights backend model engine dist job cli)

# tpinfer_check_layer(TARGET LAYER ALLOWED FORBID FILES...): makes TARGET wait
# for the include check of FILES, rerun whenever one of them changes.
function(tpinfer_check_layer target layer allowed forbid)
  set(files ${ARGN})
  set(dir ${PROJECT_BINARY_DIR}/layer-check)
  set(list_file ${dir}/${target}.files)
  string(REPLACE ";" "\n" lines "${files}")
  file(WRITE ${list_file}.tmp "${lines}\n")
  file(COPY_FILE ${list_file}.tmp ${list_file} ONLY_IF_DIFFERENT)
  set(stamp ${dir}/${target}.ok)
  string(REPLACE ";" "," allowed_arg "${allowed}")
  string(REPLACE ";" "," forbid_arg "${forbid}")
  string(REPLACE ";" "," layers_arg "${TPINFER_LAYERS}")
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DLAYER=${layer} "-DALLOWED=${allowed_arg}" "-DFORBID=${forbid_arg}"
            "-DLAYERS=${layers_arg}" -DFILES=${list_file} -DSTAMP=${stamp}
            -P ${PROJECT_SOURCE_DIR}/cmake/CheckLayerIncludes.cmake
    DEPENDS ${files} ${list_file} ${PROJECT_SOURCE_DIR}/cmake/CheckLayerIncludes.cmake
    COMMENT "Checking the includes of layer ${layer} (${target})"
    VERBATIM)
  add_custom_target(${target}_layer_check DEPENDS ${stamp})
  add_dependencies(${target} ${target}_layer_check)
endfunction()

# tpinfer_layer(NAME [DIRS subdir...] [USES layer...] [FORBID header...]
#               [EXCLUDE file...] [LIBS external...])
# builds tpinfer_NAME from src/NAME/*.cpp (and src/NAME/<subdir>/*.cpp),
# linking tpinfer_<layer> for each USES and LIBS publicly.
function(tpinfer_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 L "" "" "DIRS;USES;FORBID;EXCLUDE;LIBS")
  set(dirs ${PROJECT_SOURCE_DIR}/src/${name})
  foreach(d ${L_DIRS})
    list(APPEND dirs ${PROJECT_SOURCE_DIR}/src/${name}/${d})
  endforeach()
  set(sources "")
  set(headers "")
  foreach(d ${dirs})
    file(GLOB s CONFIGURE_DEPENDS ${d}/*.cpp)
    file(GLOB h CONFIGURE_DEPENDS ${d}/*.hpp)
    list(APPEND sources ${s})
    list(APPEND headers ${h})
  endforeach()
  foreach(e ${L_EXCLUDE})
    list(REMOVE_ITEM sources ${PROJECT_SOURCE_DIR}/src/${name}/${e})
  endforeach()
  foreach(u ${L_USES})
    if(NOT u IN_LIST TPINFER_LAYERS)
      message(FATAL_ERROR "tpinfer_layer(${name}): '${u}' is not a layer (${TPINFER_LAYERS})")
    endif()
  endforeach()
  add_library(tpinfer_${name} STATIC ${sources} ${headers})
  target_include_directories(tpinfer_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  list(TRANSFORM L_USES PREPEND tpinfer_ OUTPUT_VARIABLE uses)
  target_link_libraries(tpinfer_${name} PUBLIC ${uses} ${L_LIBS})
  set_property(GLOBAL PROPERTY TPINFER_LAYER_USES_${name} "${L_USES}")
  set_property(GLOBAL PROPERTY TPINFER_LAYER_FORBID_${name} "${L_FORBID}")
  tpinfer_check_layer(tpinfer_${name} ${name} "${L_USES}" "${L_FORBID}" ${sources} ${headers})
endfunction()
