resnet_d.py --arch resnet20 --epochs 6 --batch-size 128 --variant D --seed 0 
