725
future){"rules":[{"name":"x","action":"maybe"}]}#
!
north
ew10.0.0.3:15443 (