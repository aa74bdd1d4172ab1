// The POV-Ray example: a frame rendered in row ranges (+SR/+ER), one task each, on providers that offer povray.
#version 3.7;
#include "colors.inc"
#include "textures.inc"
#include "stones.inc"

global_settings { assumed_gamma 1.0 max_trace_level 8 }
camera { location <0, 2.2, -6> look_at <0, 0.8, 0> angle 50 }
light_source { <5, 8, -6> color White area_light <1, 0, 0>, <0, 0, 1>, 3, 3 adaptive 1 }
light_source { <-6, 4, -3> color rgb 0.3 shadowless }
sky_sphere { pigment { gradient y color_map { [0 color rgb <0.7, 0.8, 1>] [1 color rgb <0.2, 0.3, 0.8>] } } }
plane { y, 0 pigment { checker color White color rgb 0.3 scale 0.75 } finish { reflection 0.1 } }
sphere { <0, 1, 0>, 1 pigment { color rgb <0.9, 0.2, 0.1> } finish { phong 0.8 reflection 0.25 } }
sphere { <1.8, 0.6, 0.8>, 0.6 material { texture { pigment { color rgbf <0.9, 1, 0.9, 0.9> } finish { phong 1 } } interior { ior 1.5 } } }
box { <-2.6, 0, 0.4>, <-1.6, 1.2, 1.4> rotate y * 25 texture { T_Stone1 scale 0.5 } }
torus { 0.5, 0.15 rotate x * 90 translate <-0.3, 0.65, -1.6> pigment { color rgb <0.1, 0.5, 0.9> } finish { metallic reflection 0.4 } }
