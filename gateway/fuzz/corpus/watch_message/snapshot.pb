&
$
east
ew10.0.0.1:15443(2eu/a&
$
west
ew10.0.0.2:15443(2us/b31
westshopapi"
httpê?"	
grpcÇG*0s2q
west-to-shop_{"rules":[{"name":"a","action":"allow","from":[{"cluster":"west"}],"to":{"namespace":"shop"}}]} 